"""Inference: subspace embeddings of records and top-K cross-modal matches.

Used by inference.py. The model is the exported SavedModel (from
`train_dir/export/` or a `--input_model_tgz` bundle), so no training flags
are needed. Everything streams:

- records are read shard by shard and embedded batch by batch;
- gallery embeddings are spooled to float32 files on disk and read back in
  chunks (`numpy.memmap`), so a gallery larger than memory works;
- matches are written to the CSV query chunk by query chunk.

CSV format (one row per query):

    QueryId,QueryModality,MatchScorePairs
    abcd,audio,"wxyz 0.931200 efgh 0.910700 ..."

with gallery ids of the other modality and their cosine scores, best first.
`--embeddings_file` writes an .npz with arrays `ids` (str), `audio` [N,k]
and `video` [N,k] (float32, rows aligned).
"""

import csv
import io
import logging
import os
import tempfile

import numpy as np
import tensorflow as tf

from yt8m_xmodal import metrics
from yt8m_xmodal import readers
from yt8m_xmodal.errors import DataError

log = logging.getLogger("yt8m_xmodal")

MODALITIES = ("audio", "video")
CSV_HEADER = ("QueryId", "QueryModality", "MatchScorePairs")


def embed_records(serve, data_pattern, batch_size=256):
    """Yields (ids, audio, video) numpy batches of the records in a pattern.

    Args:
      serve: the `serving_default` signature of an exported SavedModel.
      data_pattern: comma-separated globs of YT8M records.

    Raises:
      DataError: naming the file, for a corrupt shard or records the model
        cannot parse (wrong level or feature sizes).
    """
    for path in readers.resolve_files(data_pattern):
        records = tf.data.TFRecordDataset(path).batch(batch_size)
        try:
            for serialized in records:
                out = serve(serialized)
                ids = np.asarray([x.decode() for x in out["id"].numpy()])
                audio = out["audio"].numpy().astype(np.float32)
                video = out["video"].numpy().astype(np.float32)
                check_finite(path, ids, audio, video)
                yield ids, audio, video
        except tf.errors.DataLossError as e:
            raise DataError(f"{path} is corrupt or truncated: "
                            f"{_first_line(e)}") from None
        except tf.errors.InvalidArgumentError as e:
            raise DataError(
                f"{path}: records do not match the exported model's reader "
                f"(level, feature names or sizes): {_first_line(e)}") from None


def check_finite(where, ids, audio, video):
    """Raises DataError naming `where` and the ids with NaN or inf embeddings."""
    for name, values in (("audio", audio), ("video", video)):
        bad = ~np.all(np.isfinite(values), axis=1)
        if bad.any():
            raise DataError(
                f"{where}: non-finite {name} embeddings for ids "
                f"{np.asarray(ids)[bad][:5].tolist()} (NaN or inf features?)")


def _first_line(error):
    text = getattr(error, "message", str(error)).strip()
    return text.splitlines()[0] if text else repr(error)


class SpooledEmbeddings:
    """Row-aligned embeddings written to disk as they come, read in chunks."""

    def __init__(self, directory):
        self.directory = directory
        self.ids = []
        self._files = {m: open(os.path.join(directory, f"{m}.f32"), "wb")
                       for m in MODALITIES}
        self.dim = None

    def append(self, ids, audio, video):
        self.ids.extend(ids.tolist())
        self.dim = audio.shape[1]
        self._files["audio"].write(np.ascontiguousarray(audio).tobytes())
        self._files["video"].write(np.ascontiguousarray(video).tobytes())

    def close(self):
        for f in self._files.values():
            f.close()

    def __len__(self):
        return len(self.ids)

    def array(self, modality):
        """A read-only memmap [N, k] of one modality."""
        return np.memmap(os.path.join(self.directory, f"{modality}.f32"),
                         dtype=np.float32, mode="r", shape=(len(self), self.dim))

    def chunks(self, modality, chunk_size):
        data = self.array(modality)
        for start in range(0, len(self), chunk_size):
            yield np.asarray(data[start:start + chunk_size])


def spool(serve, data_pattern, directory, batch_size=256):
    emb = SpooledEmbeddings(directory)
    try:
        for ids, audio, video in embed_records(serve, data_pattern, batch_size):
            emb.append(ids, audio, video)
    finally:
        emb.close()
    if not len(emb):
        raise DataError(f"{data_pattern}: no records")
    return emb


def write_embeddings(emb, path):
    """The .npz contract: `ids` (str), `audio` [N,k], `video` [N,k] float32."""
    np.savez(path, ids=np.asarray(emb.ids, dtype=str),
             audio=np.asarray(emb.array("audio")),
             video=np.asarray(emb.array("video")))


EMBEDDING_KEYS = ("ids", "audio", "video")


def save_embeddings(path, ids, audio, video):
    """Writes one .npz of the contract to exactly `path` (a local path, or
    any tf.io.gfile one such as gs://)."""
    arrays = dict(ids=np.asarray(ids, dtype=str),
                  audio=np.asarray(audio, dtype=np.float32),
                  video=np.asarray(video, dtype=np.float32))
    if "://" not in path:
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        return
    # Built in memory: np.savez seeks, which a gfile open for writing cannot.
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def read_embeddings(pattern):
    """Loads embeddings .npz files into one set.

    Args:
      pattern: comma-separated paths or globs of .npz files with the keys
        `ids`, `audio` and `video` (as `--embeddings_file` and the sharded
        output of `yt8m_xmodal.pipelines.embed` write them); files are read
        in sorted order of each glob.

    Returns:
      A dict with `ids` [N] str, `audio` [N,k] and `video` [N,k] float32,
      the files' rows concatenated.

    Raises:
      DataError: naming the file, for a missing key, rows that do not align,
        or an embedding size that differs from the other files'.
    """
    parts = {key: [] for key in EMBEDDING_KEYS}
    for path in readers.resolve_files(pattern):
        try:
            with tf.io.gfile.GFile(path, "rb") as f, \
                    np.load(f, allow_pickle=False) as data:
                missing = [k for k in EMBEDDING_KEYS if k not in data.files]
                if missing:
                    raise DataError(
                        f"{path} has no array {missing[0]!r} (embeddings "
                        f"files hold {', '.join(EMBEDDING_KEYS)})")
                arrays = {key: data[key] for key in EMBEDDING_KEYS}
        except DataError:
            raise
        except (OSError, ValueError) as e:
            raise DataError(f"{path} is not an embeddings .npz: {e}") from None
        rows = len(arrays["ids"])
        for key in ("audio", "video"):
            values = arrays[key]
            if values.ndim != 2 or len(values) != rows:
                raise DataError(f"{path}: {key} has shape {values.shape}, "
                                f"not [{rows}, k] for its {rows} ids")
            if parts[key] and values.shape[1] != parts[key][0].shape[1]:
                raise DataError(
                    f"{path}: {key} embeddings of size {values.shape[1]}, "
                    f"the files before have {parts[key][0].shape[1]}")
        for key in EMBEDDING_KEYS:
            parts[key].append(arrays[key])
    return {"ids": np.concatenate(parts["ids"]).astype(str),
            "audio": np.concatenate(parts["audio"]).astype(np.float32),
            "video": np.concatenate(parts["video"]).astype(np.float32)}


def write_matches(queries, gallery, query_modalities, top_k, output_file,
                  chunk_size=4096):
    """Writes the top-K CSV; returns the number of rows."""
    rows = 0
    with open(output_file, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        for modality in query_modalities:
            other = "video" if modality == "audio" else "audio"
            k = min(top_k, len(gallery))
            start = 0
            for query_chunk in queries.chunks(modality, chunk_size):
                indices, scores = metrics.top_k_matches(
                    query_chunk, gallery.chunks(other, chunk_size), k)
                for row, (idx, sc) in enumerate(zip(indices, scores)):
                    pairs = " ".join(f"{gallery.ids[i]} {s:.6f}"
                                     for i, s in zip(idx, sc))
                    writer.writerow((queries.ids[start + row], modality, pairs))
                    rows += 1
                start += len(query_chunk)
    return rows


def run_inference(serve, input_data_pattern, output_file="",
                  gallery_data_pattern="", query_modality="both", top_k=20,
                  embeddings_file="", batch_size=256):
    """Embeds the inputs, writes embeddings and/or the top-K CSV.

    Returns:
      A dict with the number of queries, gallery size and rows written.
    """
    modalities = MODALITIES if query_modality == "both" else (query_modality,)
    with tempfile.TemporaryDirectory(prefix="yt8m_xmodal_inference_") as tmp:
        os.makedirs(os.path.join(tmp, "queries"))
        queries = spool(serve, input_data_pattern, os.path.join(tmp, "queries"),
                        batch_size)
        log.info("embedded %d videos of %s", len(queries), input_data_pattern)
        if embeddings_file:
            write_embeddings(queries, embeddings_file)
        gallery = queries
        if gallery_data_pattern and gallery_data_pattern != input_data_pattern:
            os.makedirs(os.path.join(tmp, "gallery"))
            gallery = spool(serve, gallery_data_pattern,
                            os.path.join(tmp, "gallery"), batch_size)
        rows = 0
        if output_file:
            rows = write_matches(queries, gallery, modalities, top_k, output_file)
        return {"num_queries": len(queries), "gallery_size": len(gallery),
                "rows": rows}
