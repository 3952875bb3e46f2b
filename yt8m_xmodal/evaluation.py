"""Embeds a data set with a trained model and scores cross-modal retrieval.

Used by train.py (validation at each export), eval.py (checkpoint watcher) and
inference.py. Embeddings are streamed batch by batch; the metrics themselves
are computed in query chunks by `metrics.py`, so memory stays bounded by the
embeddings (N x k floats), never by an N x N similarity matrix.
"""

import dataclasses
import gc
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf

from yt8m_xmodal import cli
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import metrics
from yt8m_xmodal import models
from yt8m_xmodal import readers
from yt8m_xmodal import subspace as subspace_lib
from yt8m_xmodal import summaries
from yt8m_xmodal.errors import DataError, FlagError

log = logging.getLogger("yt8m_xmodal")


@dataclasses.dataclass
class Embeddings:
    """Row-aligned embeddings of a data set."""

    ids: np.ndarray          # [N] str
    audio: np.ndarray        # [N, k] float32
    video: np.ndarray        # [N, k] float32
    labels: list             # N int arrays of class indices
    attention: dict = None   # {"audio": [C], "video": [C]} mean chunk weights

    def __len__(self):
        return len(self.ids)


def _labels_to_lists(labels):
    if isinstance(labels, tf.RaggedTensor):
        return [np.asarray(r, np.int64) for r in labels.to_list()]
    dense = np.asarray(labels)
    return [np.flatnonzero(row > 0) for row in dense]


def embed_dataset(model, batches, subspace=None, with_attention=False):
    """Runs the model over `batches` and collects row-aligned embeddings.

    Args:
      model: a `models.CrossModalModel`.
      batches: an iterable of batch dictionaries (see readers.py).
      subspace: an optional fitted `subspace.LinearCCA`; when given, the
        embeddings are projected into the CCA subspace.
      with_attention: also average the chunk-attention weights over the set
        (models without attention return none).

    Returns:
      An `Embeddings`.
    """
    call = tf.function(
        lambda batch: model(batch, training=False,
                            return_attention=with_attention))
    ids, audio, video, labels = [], [], [], []
    attention_sum, attention_count = {}, 0
    for batch in batches:
        out = call(batch)
        a, v = out["audio"], out["video"]
        if subspace is not None:
            v, a = subspace.project_video(v), subspace.project_audio(a)
        ids.extend(x.decode() for x in batch["id"].numpy())
        audio.append(np.asarray(a, np.float32))
        video.append(np.asarray(v, np.float32))
        labels.extend(_labels_to_lists(batch["labels"]))
        if with_attention and "audio_attention" in out:
            for name in ("audio", "video"):
                weights = np.asarray(out[f"{name}_attention"], np.float64)
                attention_sum[name] = attention_sum.get(name, 0) + weights.sum(0)
            attention_count += len(a)
    if not ids:
        raise DataError("the data set is empty: no videos were read")
    attention = ({k: v / attention_count for k, v in attention_sum.items()}
                 if attention_count else None)
    return Embeddings(np.asarray(ids), np.concatenate(audio),
                      np.concatenate(video), labels, attention)


def check_alignment(emb):
    """Every id must carry both modalities exactly once."""
    unique, counts = np.unique(emb.ids, return_counts=True)
    if len(unique) != len(emb.ids):
        raise DataError(
            f"duplicate video ids in the evaluation set, e.g. "
            f"{unique[counts > 1][:5].tolist()}: the true pair of a query "
            "would be ambiguous")
    for name in ("audio", "video"):
        bad = ~np.all(np.isfinite(getattr(emb, name)), axis=1)
        if bad.any():
            raise DataError(
                f"non-finite {name} embeddings for ids "
                f"{emb.ids[bad][:5].tolist()}")


def score(emb, top_k):
    """Both-direction retrieval metrics (with label mAP) of an `Embeddings`."""
    check_alignment(emb)
    return metrics.cross_modal_metrics(
        emb.audio, emb.video, labels=emb.labels, top_k=top_k)


_COLUMNS = (("recall@{k}", "R@{k}"), ("median_rank", "MedR"),
            ("mean_rank", "MeanR"), ("mrr", "MRR"), ("map", "mAP"))


def format_table(result, title=""):
    """A readable table of a `cross_modal_metrics` result.

    The number of queries (= gallery size) is printed with the figures:
    Recall@K depends on it.
    """
    keys, heads = [], []
    first = result["audio_to_video"]
    for key, head in _COLUMNS:
        if "{k}" in key:
            ks = sorted(int(name.split("@")[1]) for name in first
                        if name.startswith("recall@"))
            keys += [key.format(k=k) for k in ks]
            heads += [head.format(k=k) for k in ks]
        elif key in first:
            keys.append(key)
            heads.append(head)
    n = result["num_queries"]
    lines = [title] if title else []
    lines.append(f"{n} queries against a gallery of {n} in each direction")
    lines.append(f"{'direction':<16}" + "".join(f"{h:>9}" for h in heads))
    for direction in ("audio_to_video", "video_to_audio"):
        row = result[direction]
        cells = "".join(
            f"{row[k]:>9.1f}" if "rank" in k else f"{row[k]:>9.4f}" for k in keys)
        lines.append(f"{direction:<16}{cells}")
    return "\n".join(lines)


def load_model(train_dir, checkpoint_path=None):
    """Rebuilds the model of `train_dir` from model_flags.json and restores it.

    Returns:
      (model_flags, model, subspace, step) with `step` the restored global
      step.

    Raises:
      FlagError: naming --train_dir when there is no model or checkpoint, or
        the checkpoint does not fit the model in model_flags.json.
    """
    flags = config_lib.read_model_flags(train_dir)
    model, subspace = build_model(flags)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    if checkpoint_path is None:
        checkpoint_path = latest_checkpoint_or_error(train_dir)
    ckpt = tf.train.Checkpoint(**checkpoint_objects(model, subspace, step))
    try:
        ckpt.read(checkpoint_path).expect_partial().assert_existing_objects_matched()
    except tf.errors.NotFoundError:
        raise
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        error = FlagError(
            f"checkpoint {checkpoint_path} does not match the model described "
            f"in {train_dir}/model_flags.json ({first})")
    else:
        return flags, model, subspace, int(step.numpy())
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


def checkpoint_objects(model, subspace, step):
    """What a checkpoint holds of the model, shared by train and eval.

    The model's weights go in as one ordered list rather than as the model
    object: TF's object-graph checkpoint does not follow the Python lists of
    sub-layers that Keras 3 layers keep (e.g. a projection head's hidden
    layers), so saving `model=` would silently leave those weights out. The
    order of `model.weights` is fixed by the architecture, which
    model_flags.json pins.
    """
    return {"model_weights": list(model.weights), "subspace": subspace,
            "step": step}


def build_model(flags):
    """Builds the model named in model_flags and its `LinearCCA` subspace.

    Both get their weights here (from a zero batch), so a checkpoint restores
    into existing variables.

    Returns:
      (model, subspace).
    """
    data = flags.data
    model = models.get_model(
        flags.model, video_size=data.video_size, audio_size=data.audio_size,
        **flags.model_config)
    out = model(dummy_batch(data), training=False)
    subspace = subspace_lib.LinearCCA(flags.subspace_dim)
    subspace.build({"video": tuple(out["video"].shape),
                    "audio": tuple(out["audio"].shape)})
    return model, subspace


def dummy_batch(data, batch_size=2):
    """A zero batch of the right structure, used to create model weights."""
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


class CheckpointGoneError(RuntimeError):
    """A checkpoint disappeared (e.g. removed by max_to_keep) while read."""


def latest_checkpoint_or_error(train_dir):
    path = tf.train.latest_checkpoint(train_dir)
    if path is None:
        raise FlagError(f"--train_dir={train_dir} holds no checkpoint yet")
    return path


def evaluate_checkpoint(train_dir, eval_data_pattern, top_k, checkpoint_path=None,
                        batch_size=256, use_subspace=True, skip_corrupt=False):
    """Embeds `eval_data_pattern` with one checkpoint and scores retrieval.

    Returns:
      The `metrics.cross_modal_metrics` dict with "step" added.
    """
    try:
        flags, model, subspace, step = load_model(train_dir, checkpoint_path)
    except tf.errors.NotFoundError as e:
        raise CheckpointGoneError(str(e)) from None
    reader = readers.get_reader(
        frame_features=flags.data.frame_features,
        feature_names=flags.data.feature_names,
        feature_sizes=flags.data.feature_sizes,
        max_frames=flags.data.max_frames, num_classes=flags.data.num_classes,
        skip_corrupt=skip_corrupt)
    dataset = reader.dataset(eval_data_pattern, batch_size=batch_size,
                             shuffle=False, num_epochs=1)
    emb = embed_dataset(model, readers.iterate(dataset, eval_data_pattern),
                        subspace=subspace if use_subspace else None)
    result = score(emb, top_k)
    return {"step": step, **result}


def write_metrics(result, train_dir, output_json=""):
    """Writes metrics.json (atomically) and TensorBoard scalars under eval/."""
    eval_dir = os.path.join(train_dir, "eval")
    path = output_json or os.path.join(eval_dir, "metrics.json")
    cli.check_output_path("output_json", output_json)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    config_lib.atomic_write_text(path, json.dumps(result, indent=2))
    writer = tf.summary.create_file_writer(eval_dir)
    with writer.as_default():
        summaries.write_retrieval_scalars(result["step"], result, "eval")
    writer.flush()
    return path


def watch_checkpoints(train_dir, evaluate, poll_seconds=30.0, max_evaluations=None,
                      sleep=time.sleep):
    """Evaluates each new checkpoint of `train_dir` once, polling in between.

    Only checkpoints listed in the `checkpoint` state file are read; TF writes
    that file (atomically) after a checkpoint's files are complete, so a
    half-written checkpoint is never seen. A checkpoint deleted by
    `max_to_keep` while it is read is logged and passed over.

    Args:
      evaluate: called with a checkpoint path.
      max_evaluations: stop after this many (None: until interrupted).
    """
    seen = set()
    evaluations = 0
    while max_evaluations is None or evaluations < max_evaluations:
        path = tf.train.latest_checkpoint(train_dir)
        if path is None or path in seen:
            sleep(poll_seconds)
            continue
        seen.add(path)
        try:
            evaluate(path)
        except CheckpointGoneError:
            log.warning("checkpoint %s was removed while being read; waiting "
                        "for the next one", path)
            continue
        evaluations += 1
    return evaluations
