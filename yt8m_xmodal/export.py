"""Exported models: Keras towers, a serving SavedModel, and .tgz bundles.

Each export is a directory `train_dir/export/step_NNNNNNNN/` holding:

- `audio_tower.keras`, `video_tower.keras`: the two towers, loadable with
  `keras.models.load_model` and no training flags;
- `subspace.keras`: the fitted `LinearCCA` layer;
- `model_flags.json`: the flags that built the model;
- `saved_model/`: a SavedModel whose `serving_default` signature takes a
  batch of serialized YT8M records (`SequenceExample`s at frame level,
  `Example`s at video level) and returns `id` and the subspace embeddings
  `audio` and `video`.

An export is written to a temporary directory and renamed into place, so a
reader never sees half of one. `--output_model_tgz` / `--input_model_tgz` pack
and unpack it, as in the YouTube-8M starter code.
"""

import os
import shutil
import tarfile
import tempfile

import keras
import tensorflow as tf

from yt8m_xmodal import config as config_lib
from yt8m_xmodal import readers
from yt8m_xmodal.errors import FlagError

EXPORT_DIR = "export"
SAVED_MODEL_DIR = "saved_model"


class ServingModule(tf.Module):
    """Serialized YT8M records in, subspace embeddings out."""

    def __init__(self, model, subspace, data_config):
        super().__init__()
        self.model = model
        self.subspace = subspace
        self._reader = readers.get_reader(
            frame_features=data_config.frame_features,
            feature_names=data_config.feature_names,
            feature_sizes=data_config.feature_sizes,
            max_frames=data_config.max_frames,
            num_classes=data_config.num_classes)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, serialized):
        batch = self._reader.parse_serialized(serialized)
        out = self.model(batch, training=False)
        return {
            "id": batch["id"],
            "video": self.subspace.project_video(out["video"]),
            "audio": self.subspace.project_audio(out["audio"]),
        }


def export_model(train_dir, step, model_flags, model, subspace):
    """Writes `train_dir/export/step_NNNNNNNN/` atomically; returns its path."""
    base = os.path.join(train_dir, EXPORT_DIR)
    os.makedirs(base, exist_ok=True)
    final = os.path.join(base, f"step_{step:08d}")
    tmp = tempfile.mkdtemp(dir=base, prefix=".tmp-")
    try:
        model.audio_tower.save(os.path.join(tmp, "audio_tower.keras"))
        model.video_tower.save(os.path.join(tmp, "video_tower.keras"))
        keras.saving.save_model(subspace, os.path.join(tmp, "subspace.keras"))
        config_lib.write_model_flags(tmp, model_flags)
        module = ServingModule(model, subspace, model_flags.data)
        tf.saved_model.save(
            module, os.path.join(tmp, SAVED_MODEL_DIR),
            signatures={"serving_default": module.serve})
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
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
        raise FlagError(f"--train_dir={train_dir} does not exist")
    path = latest_export(train_dir)
    if path is None:
        raise FlagError(f"--train_dir={train_dir} holds no exported model "
                        f"({EXPORT_DIR}/step_*): run train.py first")
    return path


def bundle(export_dir, output_tgz):
    """Packs an export directory into a .tgz bundle."""
    out_dir = os.path.dirname(os.path.abspath(output_tgz))
    if not os.path.isdir(out_dir):
        raise FlagError(f"--output_model_tgz={output_tgz}: directory {out_dir} "
                        "does not exist")
    tmp = output_tgz + ".tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(export_dir, arcname="model")
    os.replace(tmp, output_tgz)
    return output_tgz


def unbundle(input_tgz, target_dir):
    """Unpacks a bundle made by `bundle`; returns the export directory."""
    if not os.path.exists(input_tgz):
        raise FlagError(f"--input_model_tgz={input_tgz} does not exist")
    try:
        with tarfile.open(input_tgz, "r:gz") as tar:
            tar.extractall(target_dir, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise FlagError(f"--input_model_tgz={input_tgz} is not a model bundle "
                        f"({e})") from None
    export_dir = os.path.join(target_dir, "model")
    if not os.path.isdir(os.path.join(export_dir, SAVED_MODEL_DIR)):
        raise FlagError(f"--input_model_tgz={input_tgz} holds no {SAVED_MODEL_DIR}")
    return export_dir


def load_serving(export_dir):
    """Loads the SavedModel of an export: a callable on serialized records."""
    path = os.path.join(export_dir, SAVED_MODEL_DIR)
    if not os.path.isdir(path):
        raise FlagError(f"{export_dir} holds no {SAVED_MODEL_DIR}")
    return tf.saved_model.load(path).signatures["serving_default"]
