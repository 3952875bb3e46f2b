"""Inference: subspace embeddings of records and top-K cross-modal matches.

Used by inference.py. The model is the exported SavedModel (from
`train_dir/export/` or a `--input_model_tgz` bundle), so no training flags
are needed. Everything streams:

- records are read shard by shard and embedded batch by batch;
- gallery embeddings are spooled to float32 files on disk and read back in
  chunks (`numpy.memmap`), so a gallery larger than memory works;
- matches are written to the CSV query chunk by query chunk.

The CSV format and the other outputs: docs/design.md, "Inference".
"""

import csv
import logging
import os
import re
import tempfile

import numpy as np
import tensorflow as tf

from yt8m_xmodal import embeddings as embeddings_lib
from yt8m_xmodal import explain
from yt8m_xmodal import formats
from yt8m_xmodal import metrics
from yt8m_xmodal import progress
from yt8m_xmodal import readers
from yt8m_xmodal.errors import DataError

log = logging.getLogger("yt8m_xmodal")

MODALITIES = ("audio", "video")
CSV_HEADER = ("QueryId", "QueryModality", "MatchScorePairs")


def embed_records(signature, data_pattern, batch_size=256,
                  modalities=MODALITIES):
    """Yields (ids, {name: array}) numpy batches of the records in a pattern.

    Args:
      signature: a signature of an exported SavedModel over serialized
        records: `serving_default` (both modalities) or `embed_audio` /
        `embed_video` (records that need to hold only that modality).
      data_pattern: comma-separated globs of YT8M records.
      modalities: the modalities `signature` embeds.

    The arrays are the subspace embeddings `audio` / `video` [B, k] and,
    for chunk-attention models, `attention_audio` / `attention_video` [B, C].

    Raises:
      DataError: naming the file, for a corrupt shard or records the model
        cannot parse (wrong level or feature sizes, a missing modality).
    """
    for path in readers.resolve_files(data_pattern):
        records = tf.data.TFRecordDataset(path).batch(batch_size)
        try:
            for serialized in records:
                yield embed_batch(signature, serialized, modalities, path)
        except tf.errors.DataLossError as e:
            raise DataError(f"{path} is corrupt or truncated: "
                            f"{_first_line(e)}") from None


def embed_batch(signature, serialized, modalities=MODALITIES, where=""):
    """(ids, {name: array}) of one batch of serialized records, as
    `embed_records` yields them; the search service embeds its uploads here.

    Raises:
      DataError: naming `where`, for records the model cannot parse or
        non-finite embeddings.
    """
    try:
        out = signature(serialized=serialized)
    except tf.errors.InvalidArgumentError as e:
        raise DataError(
            f"{where}: records do not match the exported model "
            f"({'/'.join(modalities)}; level, feature names or sizes): "
            f"{_first_line(e)}") from None
    ids = np.asarray([x.decode() for x in out["id"].numpy()])
    arrays = {}
    for name in modalities:
        key = name if len(modalities) > 1 else "embedding"
        arrays[name] = out[key].numpy().astype(np.float32)
        attention = (f"{name}_attention" if len(modalities) > 1
                     else "attention")
        if attention in out:
            arrays[f"attention_{name}"] = (
                out[attention].numpy().astype(np.float32))
    embeddings_lib.check_finite(where, ids, arrays)
    return ids, arrays


def _first_line(error):
    """What a failed assertion in a signature says, else TF's first line."""
    text = getattr(error, "message", str(error)).strip()
    asserted = re.search(r"assertion failed: \[([^\]]*)\]", text)
    if asserted:
        return asserted.group(1).replace("\\'", "'").strip(" .")
    return text.splitlines()[0] if text else repr(error)


class SpooledEmbeddings:
    """Row-aligned arrays written to disk as they come, read in chunks."""

    def __init__(self, directory):
        self.directory = directory
        self.ids = []
        self._files = {}
        self.widths = {}

    def append(self, ids, arrays):
        self.ids.extend(ids.tolist())
        for name, values in arrays.items():
            if name not in self._files:
                self._files[name] = open(
                    os.path.join(self.directory, f"{name}.f32"), "wb")
                self.widths[name] = values.shape[1]
            self._files[name].write(np.ascontiguousarray(values).tobytes())

    def close(self):
        for f in self._files.values():
            f.close()

    def __len__(self):
        return len(self.ids)

    def array(self, name):
        """A read-only memmap [N, width] of one array."""
        return np.memmap(os.path.join(self.directory, f"{name}.f32"),
                         dtype=np.float32, mode="r",
                         shape=(len(self), self.widths[name]))

    def chunks(self, name, chunk_size):
        data = self.array(name)
        for start in range(0, len(self), chunk_size):
            yield np.asarray(data[start:start + chunk_size])


def spool(signature, data_pattern, directory, batch_size=256,
          modalities=MODALITIES, label="embed"):
    emb = SpooledEmbeddings(directory)
    bar = progress.Progress(label, progress.count_records(data_pattern),
                            "video")
    try:
        for ids, arrays in embed_records(signature, data_pattern, batch_size,
                                         modalities):
            emb.append(ids, arrays)
            bar.advance(len(ids))
    finally:
        emb.close()
        bar.close()
    if not len(emb):
        raise DataError(f"{data_pattern}: no records")
    return emb


def write_embeddings(emb, path, model_fingerprint=""):
    """Writes spooled embeddings as one embeddings file (`embeddings.py`'s
    contract), with the `model_fingerprint` of the export that made them (an
    index built from the file records it, and refuses queries of another
    model)."""
    extra = {embeddings_lib.FINGERPRINT_KEY: model_fingerprint} if (
        model_fingerprint) else {}
    embeddings_lib.save_embeddings(
        path, emb.ids, **extra,
        **{name: np.asarray(emb.array(name)) for name in emb.widths})


def top_matches(queries, gallery, query_modalities, top_k,
                chunk_size=4096, csls_k=0):
    """Yields (query row, query modality, gallery rows, scores) per query:
    the top-K gallery items of the other modality, best first.

    `gallery` is the spooled gallery (exact search, streamed in chunks) or a
    loaded `index.Index` of the other modality's embeddings. With
    `csls_k` > 0 (and a spooled gallery) the ranking is CSLS's
    (`metrics.csls_pair`) and the scores are its cos(q, g) - r(g) / 2.
    """
    for modality in query_modalities:
        other = "video" if modality == "audio" else "audio"
        k = min(top_k, len(gallery))
        if csls_k and isinstance(gallery, SpooledEmbeddings):
            q, g = metrics.csls_pair(queries.array(modality),
                                     gallery.array(other), csls_k)
            indices, scores = metrics.top_k_matches(q, g, k, cosine=False)
            for row, (idx, sc) in enumerate(zip(indices, scores)):
                yield row, modality, idx, sc
            continue
        start = 0
        for query_chunk in queries.chunks(modality, chunk_size):
            if isinstance(gallery, SpooledEmbeddings):
                indices, scores = metrics.top_k_matches(
                    query_chunk, gallery.chunks(other, chunk_size), k)
            else:
                indices, scores = gallery.search_rows(query_chunk, k)
            for row, (idx, sc) in enumerate(zip(indices, scores)):
                yield start + row, modality, idx, sc
            start += len(query_chunk)


def write_matches(matches, queries, gallery, output_file):
    """Writes the top-K CSV of `top_matches` rows; returns the row count."""
    rows = 0
    with open(output_file, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        for row, modality, idx, sc in matches:
            pairs = " ".join(f"{gallery.ids[i]} {s:.6f}"
                             for i, s in zip(idx, sc))
            writer.writerow((queries.ids[row], modality, pairs))
            rows += 1
    return rows


def run_inference(signatures, input_data_pattern, output_file="",
                  gallery_data_pattern="", query_modality="both", top_k=20,
                  embeddings_file="", batch_size=256, explain_file="",
                  chunk_seconds=None, data_config=None, model_dir=None,
                  index=None, model_fingerprint="", csls_k=0):
    """Embeds the inputs, writes embeddings and/or the top-K CSV.

    Args:
      signatures: the exported SavedModel's signatures (`modeling.
        load_signatures`).
      query_modality: "both", or "audio" / "video": the queries then need
        to hold only that modality, and the gallery only the other one.
      explain_file: also write an HTML page showing, for each query and its
        top matches, the chunk attention of both sides over the seconds.
      chunk_seconds: seconds per chunk of the model (its chunk_size: YT8M
        has one frame per second), for the page's time axis.
      data_config: the exported model's `config.DataConfig` (its
        model_flags.json); when given and the records must hold both
        modalities, the first record of the input and gallery patterns is
        checked against it, so records the model cannot read fail with a
        line saying what they hold. One-modality records are checked by the
        signature that parses them.
      model_dir: the export, named in that error.
      index: a loaded `index.Index` of the gallery (built from embeddings of
        this model) to search instead of embedding gallery records; the
        queries are of the other modality than the index's.
      csls_k: rank by CSLS with this many neighbours (the model's own
        `csls_k`), 0: by cosine. An index ranks by cosine.

    Returns:
      A dict with the number of queries, gallery size and rows written.
    """
    if data_config is not None and query_modality == "both":
        for pattern in (input_data_pattern, gallery_data_pattern):
            if pattern:
                formats.check_records(data_config, pattern,
                                      model_dir=model_dir)
    if query_modality == "both":
        query_views = gallery_views = MODALITIES
        query_signature = gallery_signature = signatures["serving_default"]
    else:
        other = "video" if query_modality == "audio" else "audio"
        query_views, gallery_views = (query_modality,), (other,)
        query_signature = signatures[f"embed_{query_modality}"]
        gallery_signature = signatures[f"embed_{other}"]
    modalities = MODALITIES if query_modality == "both" else (query_modality,)
    with tempfile.TemporaryDirectory(prefix="yt8m_xmodal_inference_") as tmp:
        os.makedirs(os.path.join(tmp, "queries"))
        queries = spool(query_signature, input_data_pattern,
                        os.path.join(tmp, "queries"), batch_size, query_views,
                        label="embed queries")
        log.info("embedded %d videos of %s", len(queries), input_data_pattern)
        if embeddings_file:
            write_embeddings(queries, embeddings_file, model_fingerprint)
        if not (output_file or explain_file):
            # Embeddings only: no gallery to search.
            return {"num_queries": len(queries), "gallery_size": 0, "rows": 0}
        if explain_file and index is not None:
            raise DataError(
                "explanations need the gallery's chunk attention, which an "
                "index does not keep: give the gallery records instead of "
                "the index")
        gallery = queries
        if index is not None:
            gallery = index
        elif (gallery_data_pattern and gallery_data_pattern != input_data_pattern
                or gallery_views != query_views):
            os.makedirs(os.path.join(tmp, "gallery"))
            gallery = spool(gallery_signature,
                            gallery_data_pattern or input_data_pattern,
                            os.path.join(tmp, "gallery"), batch_size,
                            gallery_views, label="embed gallery")
        rows = 0
        if csls_k and index is not None:
            log.info("the index ranks by cosine; the model's CSLS (csls_k=%d) "
                     "needs the gallery's records", csls_k)
        matches = top_matches(queries, gallery, modalities, top_k,
                              csls_k=csls_k)
        if explain_file:
            matches = list(matches)  # the page needs them all
        if output_file:
            rows = write_matches(matches, queries, gallery, output_file)
        if explain_file:
            explain.write_html(explain_file, matches, queries, gallery,
                               chunk_seconds)
        return {"num_queries": len(queries), "gallery_size": len(gallery),
                "rows": rows}
