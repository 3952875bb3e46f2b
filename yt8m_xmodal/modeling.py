"""Builds, restores and exports a model from its configuration.

- `build_model(config)`: the two-tower model and its `LinearCCA` subspace;
- `new_checkpoint` / `restore(train_dir)`: checkpoints and the model of a
  train_dir, rebuilt from its model_flags.json;
- `export_model(...)`: `train_dir/export/step_N/` with the towers, the
  subspace, model_flags.json and a SavedModel whose signatures embed
  serialized YT8M records (both modalities, or one);
- `load_export`, `bundle` / `unbundle`: the export for Python callers and as a
  .tgz, as the starter code's --output_model_tgz does.

Exports are written beside their place and renamed in, never seen half-done.
"""

import gc
import logging
import os
import tarfile

import keras
import numpy as np
import tensorflow as tf

from yt8m_xmodal import models
from yt8m_xmodal import readers
from yt8m_xmodal import rundir
from yt8m_xmodal import subspace as subspace_lib
from yt8m_xmodal.errors import ConfigError, DataError

EXPORT_DIR = "export"
SAVED_MODEL_DIR = "saved_model"
MODALITIES = ("audio", "video")


# -- build -------------------------------------------------------------------


def build_model(config):
    """The model `config` describes and its `LinearCCA` subspace.

    Both get their weights here (from a zero batch), so a checkpoint restores
    into existing variables.

    Args:
      config: a `config.TrainConfig` (data, model, model_config,
        subspace_dim are read).

    Returns:
      (model, subspace).
    """
    model = models.model_from_config(config.model, config.data,
                                     config.model_config)
    out = model(dummy_batch(config.data), training=False)
    # LinearCcaModel's subspace is the model, with its own ridge.
    ridge = getattr(config.model_config, "linear_cca_ridge", None)
    subspace = (subspace_lib.LinearCCA(config.subspace_dim) if ridge is None
                else subspace_lib.LinearCCA(config.subspace_dim, r1=ridge,
                                            r2=ridge))
    subspace.build({"video": tuple(out["video"].shape),
                    "audio": tuple(out["audio"].shape)})
    return model, subspace


def dummy_batch(data, batch_size=2):
    """A zero batch of the structure `data` describes (to create weights)."""
    batch = {
        "id": tf.constant([b"x"] * batch_size),
        "labels": tf.zeros([batch_size, data.num_classes], tf.float32),
    }
    if data.frame_features:
        t = data.max_frames
        batch["video"] = tf.zeros([batch_size, t, data.video_size])
        batch["audio"] = tf.zeros([batch_size, t, data.audio_size])
        batch["num_frames"] = tf.fill([batch_size], t)
        batch["mask"] = tf.ones([batch_size, t], tf.bool)
    else:
        batch["video"] = tf.zeros([batch_size, data.video_size])
        batch["audio"] = tf.zeros([batch_size, data.audio_size])
    return batch


# -- checkpoints ---------------------------------------------------------------


def new_checkpoint(model, subspace, step, **extra):
    """The checkpoint of a run: model, fitted subspace, global step, and
    whatever else training keeps (optimizer, loss, data position).

    Keras 3 keeps sub-layers in lists that `tf.train.Checkpoint` does not
    follow; the package's layers hold each sub-layer in its own attribute
    instead (see ProjectionHead), so the plain object graph sees every weight
    (tests/test_models.py checks it for every model).
    """
    return tf.train.Checkpoint(model=model, subspace=subspace, step=step,
                               **extra)


class CheckpointGoneError(RuntimeError):
    """A checkpoint disappeared (e.g. removed by max_to_keep) while read."""


def latest_checkpoint(train_dir):
    """The newest checkpoint of `train_dir`.

    Raises:
      ConfigError: naming train_dir when it holds none.
    """
    path = tf.train.latest_checkpoint(train_dir)
    if path is None:
        raise ConfigError("{train_dir} holds no checkpoint yet",
                          train_dir=train_dir)
    return path


def restore(train_dir, checkpoint_path=None):
    """Rebuilds the model of `train_dir` from model_flags.json and restores it.

    Returns:
      (config, model, subspace, step): the run's `TrainConfig`, the restored
      model and subspace, and the restored global step.

    Raises:
      ConfigError: naming train_dir when there is no model or checkpoint, or
        the checkpoint does not fit the model in model_flags.json.
      CheckpointGoneError: the checkpoint was deleted while being read.
    """
    config = rundir.read_model_flags(train_dir)
    model, subspace = build_model(config)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    if checkpoint_path is None:
        checkpoint_path = latest_checkpoint(train_dir)
    ckpt = new_checkpoint(model, subspace, step)
    try:
        ckpt.read(checkpoint_path).expect_partial().assert_existing_objects_matched()
    except tf.errors.NotFoundError as e:
        raise CheckpointGoneError(str(e)) from None
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        error = ConfigError(
            f"checkpoint {checkpoint_path} does not match the model described "
            f"in {{train_dir}}/model_flags.json ({first})", train_dir=train_dir)
    else:
        return config, model, subspace, int(step.numpy())
    # A restore that failed before expect_partial() logs a warning for every
    # value it did not restore when it is collected: dozens of lines after
    # the one-line error. Collect it now, quietly.
    tf_logger = tf.get_logger()
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        del ckpt, model, subspace, step
        gc.collect()
    finally:
        tf_logger.setLevel(level)
    raise error


# -- export --------------------------------------------------------------------


class ServingModule(tf.Module):
    """The exported model's signatures: records or features in, subspace
    embeddings (and, for chunk-attention towers, chunk weights) out.

    - `serving_default`: a [B] batch of serialized YT8M records with both
      modalities -> `id`, `audio`, `video` [B, k], and `audio_attention`,
      `video_attention` [B, C] where the towers have chunk attention;
    - `embed_audio`, `embed_video`: serialized records that need to hold
      only that modality -> `id`, `embedding` [B, k] (and `attention`). A
      song alone, without any video, is embedded this way;
    - `embed_audio_features`, `embed_video_features`: the same from one
      modality's dense features ([B, T, D] frames and [B] frame counts at
      frame level, [B, D] at video level), for Python callers.
    """

    def __init__(self, model, subspace, data_config):
        super().__init__()
        self.model = model
        self.subspace = subspace
        self._reader = readers.reader_for(data_config)
        self._frame_level = data_config.frame_features
        sizes = {"video": data_config.video_size,
                 "audio": data_config.audio_size}
        self.signature_functions = {"serving_default": self.serve}
        for modality in MODALITIES:
            embed = self._embed_function(modality, sizes[modality])
            records = self._records_function(modality)
            setattr(self, f"embed_{modality}_features", embed)
            setattr(self, f"embed_{modality}", records)
            self.signature_functions[f"embed_{modality}_features"] = embed
            self.signature_functions[f"embed_{modality}"] = records

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, serialized):
        batch = self._reader.parse_serialized(serialized)
        out = self.model(batch, training=False, return_attention=True)
        result = {"id": batch["id"]}
        for modality in MODALITIES:
            result[modality] = self._project(modality, out[modality])
            if f"{modality}_attention" in out:
                result[f"{modality}_attention"] = out[f"{modality}_attention"]
        return result

    def _project(self, modality, embedding):
        return getattr(self.subspace, f"project_{modality}")(embedding)

    def _records_function(self, modality):
        embed = self._embed_tower(modality)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def records(serialized):
            batch = self._reader.parse_one_view(serialized, modality)
            out = embed(batch[modality], batch.get("num_frames"))
            return {"id": batch["id"], **out}
        return records

    def _embed_function(self, modality, size):
        embed = self._embed_tower(modality)
        if self._frame_level:
            return tf.function(embed, input_signature=[
                tf.TensorSpec([None, None, size], tf.float32),
                tf.TensorSpec([None], tf.int32)])
        return tf.function(lambda features: embed(features), input_signature=[
            tf.TensorSpec([None, size], tf.float32)])

    def _embed_tower(self, modality):
        """features (, num_frames) -> {"embedding" (, "attention")}."""
        tower = getattr(self.model, f"{modality}_tower")
        with_attention = getattr(tower, "has_attention", False)

        def embed(features, num_frames=None):
            kwargs = {"training": False}
            if num_frames is not None:
                kwargs["mask"] = tf.sequence_mask(num_frames,
                                                  tf.shape(features)[1])
            if with_attention:
                embedding, attention = tower(features, return_attention=True,
                                             **kwargs)
                return {"embedding": self._project(modality, embedding),
                        "attention": attention}
            return {"embedding": self._project(modality, tower(features,
                                                               **kwargs))}
        return embed


class ExportedModel:
    """An export loaded for Python callers: the user's question in code.

    Args:
      export_dir: an export directory (`train_dir/export/step_N`, or what
        `unbundle` returns).

    Example (frame level; `audio_frames` [B, T, 128] float32 features and
    their frame counts):
    >>> model = load_export(latest_export(train_dir))
    >>> song = model.embed_audio(audio_frames, num_frames)  # no video needed
    >>> song["embedding"].shape == (len(num_frames), model.config.subspace_dim)
    True

    Videos embedded with `embed_video` (or `embed_records`) live in the same
    subspace: rank them by cosine similarity to the song's embedding.
    """

    def __init__(self, export_dir):
        path = os.path.join(export_dir, SAVED_MODEL_DIR)
        if not os.path.isdir(path):
            raise DataError(f"{export_dir} holds no {SAVED_MODEL_DIR}")
        self.export_dir = export_dir
        self.config = rundir.read_model_flags(export_dir)
        self._saved = tf.saved_model.load(path)
        self.signatures = self._saved.signatures
        # weights_dir -> extraction.FeatureExtractor, for embed_media.
        self._extractors = {}

    def embed_records(self, serialized):
        """Serialized records with both modalities -> numpy `id`, `audio`,
        `video` (and chunk attention where the model has it)."""
        return self._run("serving_default",
                         serialized=tf.constant(serialized, tf.string))

    def embed_audio_records(self, serialized):
        """Serialized records holding (at least) audio -> numpy `id`,
        `embedding` (and `attention`)."""
        return self._run("embed_audio", serialized=tf.constant(serialized,
                                                                tf.string))

    def embed_video_records(self, serialized):
        """Serialized records holding (at least) video: as
        embed_audio_records."""
        return self._run("embed_video", serialized=tf.constant(serialized,
                                                               tf.string))

    def embed_media(self, path, weights_dir=None):
        """Your own song or video file -> numpy `id`, `embedding` [1, k]
        (and `attention`), plus `modality`: "video" for a file with video
        (compare with songs), else "audio" (compare with videos).

        The YT8M features are extracted with the official weights in
        `weights_dir` (see yt8m_xmodal.extraction; needs the [media]
        extra); the extractor is loaded once per model and directory.
        """
        # pylint: disable=import-outside-toplevel
        from yt8m_xmodal.extraction import extractor, media
        if weights_dir not in self._extractors:
            self._extractors[weights_dir] = extractor.FeatureExtractor(
                weights_dir)
        record = self._extractors[weights_dir].extract(path)
        modality = "video" if media.has_video(path) else "audio"
        out = self._run(f"embed_{modality}",
                        serialized=tf.constant([record], tf.string))
        out["modality"] = modality
        return out

    def _run(self, signature, **inputs):
        out = self._saved.signatures[signature](**inputs)
        return {k: v.numpy() for k, v in out.items()}

    def embed_audio(self, features, num_frames=None):
        """Audio features alone -> {"embedding": [B, k], ("attention")}."""
        return self._embed("audio", features, num_frames)

    def embed_video(self, features, num_frames=None):
        """Video features alone -> {"embedding": [B, k], ("attention")}."""
        return self._embed("video", features, num_frames)

    def _embed(self, modality, features, num_frames):
        features = tf.constant(np.asarray(features, np.float32))
        inputs = {"features": features}
        if self.config.data.frame_features:
            if num_frames is None:
                num_frames = np.full([features.shape[0]], features.shape[1])
            inputs["num_frames"] = tf.constant(np.asarray(num_frames, np.int32))
        # Signatures take keyword arguments only.
        return self._run(f"embed_{modality}_features", **inputs)


def load_export(export_dir):
    """Loads an export for Python callers; see ExportedModel."""
    return ExportedModel(export_dir)


def export_model(train_dir, step, config, model, subspace):
    """Writes `train_dir/export/step_NNNNNNNN/` atomically; returns its path."""
    base = os.path.join(train_dir, EXPORT_DIR)
    os.makedirs(base, exist_ok=True)
    final = os.path.join(base, f"step_{step:08d}")
    with rundir.staged_directory(final) as tmp:
        model.audio_tower.save(os.path.join(tmp, "audio_tower.keras"))
        model.video_tower.save(os.path.join(tmp, "video_tower.keras"))
        keras.saving.save_model(subspace, os.path.join(tmp, "subspace.keras"))
        rundir.write_model_flags(tmp, config)
        module = ServingModule(model, subspace, config.data)
        tf.saved_model.save(module, os.path.join(tmp, SAVED_MODEL_DIR),
                            signatures=module.signature_functions)
    return final


def latest_export(train_dir):
    """The newest complete export directory of `train_dir`, or None."""
    base = os.path.join(train_dir, EXPORT_DIR)
    if not os.path.isdir(base):
        return None
    steps = sorted(d for d in os.listdir(base) if d.startswith("step_"))
    return os.path.join(base, steps[-1]) if steps else None


def latest_export_or_error(train_dir):
    if not os.path.isdir(train_dir):
        raise ConfigError("{train_dir} does not exist", train_dir=train_dir)
    path = latest_export(train_dir)
    if path is None:
        raise ConfigError(f"{{train_dir}} holds no exported model "
                          f"({EXPORT_DIR}/step_*): run train.py first",
                          train_dir=train_dir)
    return path


def bundle(export_dir, output_model_tgz):
    """Packs an export directory into a .tgz bundle."""
    output_tgz = output_model_tgz
    out_dir = os.path.dirname(os.path.abspath(output_tgz))
    if not os.path.isdir(out_dir):
        raise ConfigError(f"{{output_model_tgz}}: directory {out_dir} does "
                          "not exist", output_model_tgz=output_tgz)
    tmp = output_tgz + ".tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(export_dir, arcname="model")
    os.replace(tmp, output_tgz)
    return output_tgz


def unbundle(input_model_tgz, target_dir):
    """Unpacks a bundle made by `bundle`; returns the export directory."""
    input_tgz = input_model_tgz
    if not os.path.exists(input_tgz):
        raise ConfigError("{input_model_tgz} does not exist",
                          input_model_tgz=input_tgz)
    try:
        with tarfile.open(input_tgz, "r:gz") as tar:
            tar.extractall(target_dir, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise ConfigError(f"{{input_model_tgz}} is not a model bundle ({e})",
                          input_model_tgz=input_tgz) from None
    export_dir = os.path.join(target_dir, "model")
    if not os.path.isdir(os.path.join(export_dir, SAVED_MODEL_DIR)):
        raise ConfigError(f"{{input_model_tgz}} holds no {SAVED_MODEL_DIR}",
                          input_model_tgz=input_tgz)
    return export_dir


def load_signatures(export_dir):
    """The signatures of an export's SavedModel (see ServingModule), by
    name; each takes keyword arguments."""
    return load_export(export_dir).signatures
