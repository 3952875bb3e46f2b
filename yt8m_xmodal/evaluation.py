"""Embeds a data set with a trained model and scores cross-modal retrieval.

Used by train.py (validation at each export), eval.py (checkpoint watcher) and
inference.py. Embeddings are streamed batch by batch; the metrics themselves
are computed in query chunks by `metrics.py`, so memory stays bounded by the
embeddings (N x k floats), never by an N x N similarity matrix.
"""

import json
import logging
import os
import time

import numpy as np
import tensorflow as tf

from yt8m_xmodal import embeddings as embeddings_lib
from yt8m_xmodal import formats
from yt8m_xmodal import metrics
from yt8m_xmodal import modeling
from yt8m_xmodal import progress
from yt8m_xmodal import readers
from yt8m_xmodal import rundir
from yt8m_xmodal import summaries
from yt8m_xmodal.errors import DataError

log = logging.getLogger("yt8m_xmodal")


def _labels_to_lists(labels):
    if isinstance(labels, tf.RaggedTensor):
        return [np.asarray(r, np.int64) for r in labels.to_list()]
    dense = np.asarray(labels)
    return [np.flatnonzero(row > 0) for row in dense]


def embed_dataset(model, batches, subspace=None, with_attention=False,
                  label="embed", total=None):
    """Runs the model over `batches` and collects row-aligned embeddings.

    Args:
      model: a `models.CrossModalModel`.
      batches: an iterable of batch dictionaries (see `readers`).
      subspace: an optional fitted `subspace.LinearCCA`; when given, the
        embeddings are projected into the CCA subspace.
      with_attention: also average the chunk-attention weights over the set
        (models without attention return none).
      label, total: the progress report's label and expected number of
        videos (see `progress`; reports are off unless enabled).

    Returns:
      An `embeddings.Embeddings`.
    """
    call = tf.function(
        lambda batch: model(batch, training=False,
                            return_attention=with_attention))
    ids, audio, video, labels = [], [], [], []
    attention_sum, attention_count = {}, 0
    for batch in progress.track(batches, label, total, "video",
                                size=lambda b: len(b["id"])):
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
    return embeddings_lib.Embeddings(np.asarray(ids), np.concatenate(audio),
                                     np.concatenate(video), labels, attention)


def check_alignment(emb):
    """Every id must carry both modalities exactly once."""
    unique, counts = np.unique(emb.ids, return_counts=True)
    if len(unique) != len(emb.ids):
        raise DataError(
            f"duplicate video ids in the evaluation set, e.g. "
            f"{unique[counts > 1][:5].tolist()}: the true pair of a query "
            "would be ambiguous")
    embeddings_lib.check_finite("the evaluation set", emb.ids,
                                {"audio": emb.audio, "video": emb.video})


def score(emb, top_k, with_map=False, csls_k=0):
    """Both-direction retrieval metrics of an `embeddings.Embeddings`.

    Recall@K, ranks and MRR cost O(N^2) in the set size N; label mAP sorts
    every query's whole gallery, O(N^2 log N), so it is computed only when
    asked (`with_map`). csls_k > 0 ranks by CSLS (see `metrics.csls_pair`).
    """
    check_alignment(emb)
    return metrics.cross_modal_metrics(
        emb.audio, emb.video, labels=emb.labels if with_map else None,
        top_k=top_k, csls_k=csls_k)


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
                        if name.startswith("recall@")
                        and not name.endswith("_std"))
            keys += [key.format(k=k) for k in ks]
            heads += [head.format(k=k) for k in ks]
        elif key in first:
            keys.append(key)
            heads.append(head)
    n = result["num_queries"]
    lines = [title] if title else []
    draws = result.get("num_draws")
    if draws:
        lines.append(f"mean over {draws} seeded galleries of {n} videos, "
                     "each searched by its own queries in each direction "
                     "(the second row of a direction: the spread, one "
                     "standard deviation)")
    else:
        lines.append(f"{n} queries against a gallery of {n} in each "
                     "direction")
    lines.append(f"{'direction':<16}" + "".join(f"{h:>9}" for h in heads))
    for direction in ("audio_to_video", "video_to_audio"):
        row = result[direction]
        cells = "".join(
            f"{row[k]:>9.1f}" if "rank" in k else f"{row[k]:>9.4f}" for k in keys)
        lines.append(f"{direction:<16}{cells}")
        if draws:
            spread = "".join(
                f"{'±' + format(row[k + '_std'], '.1f' if 'rank' in k else '.4f'):>9}"
                for k in keys)
            lines.append(f"{'':<16}{spread}")
    return "\n".join(lines)


def evaluate_checkpoint(train_dir, eval_data_pattern, top_k, checkpoint_path=None,
                        batch_size=256, use_subspace=True, skip_corrupt=False,
                        with_map=False, csls_k=None, data=None,
                        gallery_size=0, gallery_draws=5):
    """Embeds `eval_data_pattern` with one checkpoint and scores retrieval
    (label mAP too with `with_map`).

    `csls_k` None takes the model's own (model_flags.json); 0 is plain cosine.
    `data` (a `DataConfig`) reads the records instead of the model's own.
    `gallery_size` > 0 scores `gallery_draws` seeded galleries of that many
    videos (`metrics.fixed_gallery_metrics`) instead of the whole set.

    Returns:
      The `metrics.cross_modal_metrics` dict with "step" and "csls_k" added.
    """
    config, model, subspace, step = modeling.restore(train_dir,
                                                     checkpoint_path)
    data = config.data if data is None else data
    formats.check_records(data, eval_data_pattern, model_dir=train_dir,
                          skip_corrupt=skip_corrupt)
    reader = readers.reader_for(data, skip_corrupt=skip_corrupt)
    dataset = reader.dataset(eval_data_pattern, batch_size=batch_size,
                             shuffle=False, num_epochs=1)
    emb = embed_dataset(model, readers.iterate(dataset, eval_data_pattern),
                        subspace=subspace if use_subspace else None,
                        total=progress.count_records(eval_data_pattern))
    csls_k = config.csls_k if csls_k is None else int(csls_k)
    if gallery_size:
        check_alignment(emb)
        result = metrics.fixed_gallery_metrics(
            emb.audio, emb.video, gallery_size, gallery_draws,
            labels=emb.labels if with_map else None, top_k=top_k,
            csls_k=csls_k, ids=emb.ids)
    else:
        result = score(emb, top_k, with_map, csls_k)
    return {"step": step, "csls_k": csls_k, **result}


def write_metrics(result, train_dir, output_json=""):
    """Writes metrics.json (atomically) and TensorBoard scalars under eval/."""
    eval_dir = os.path.join(train_dir, "eval")
    path = output_json or os.path.join(eval_dir, "metrics.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    rundir.atomic_write_text(path, json.dumps(result, indent=2))
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
        except modeling.CheckpointGoneError:
            log.warning("checkpoint %s was removed while being read; waiting "
                        "for the next one", path)
            continue
        evaluations += 1
    return evaluations
