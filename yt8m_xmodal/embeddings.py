"""Embeddings of a set of videos, and the one .npz file that holds them.

An embeddings file holds

    ids                                [N] str
    audio, video                       [N, k] float32, rows aligned with ids
                                       (one of them when the queries held one
                                       modality)
    attention_audio, attention_video   [N, C] float32, chunk-attention models
    model_fingerprint                  str, the export that made them
                                       (`index.model_fingerprint`)

inference.py's --embeddings_file is one; the Beam pipeline
(`pipelines.embed`) writes shards `<prefix>-00000-of-00016.npz`; the index
builder and evaluation read them with `read_embeddings`. Paths are local or
any tf.io.gfile path (gs://).
"""

import dataclasses
import io

import numpy as np
import tensorflow as tf

from yt8m_xmodal import metrics
from yt8m_xmodal import readers
from yt8m_xmodal.errors import DataError

MODALITIES = ("audio", "video")
FINGERPRINT_KEY = "model_fingerprint"


@dataclasses.dataclass
class Embeddings:
    """Row-aligned embeddings of a set of videos.

    Attributes:
      ids: [N] str.
      audio, video: [N, k] float32, or None where not computed or read.
      labels: N int arrays of class indices (evaluation), or None.
      attention: {"audio": [C], "video": [C]} mean chunk weights, or None.
      fingerprint: the model fingerprint of the files read ("" if none).
      files: the embeddings files read, in row order.
    """

    ids: np.ndarray
    audio: np.ndarray = None
    video: np.ndarray = None
    labels: list = None
    attention: dict = None
    fingerprint: str = ""
    files: tuple = ()

    def __len__(self):
        return len(self.ids)


def check_finite(where, ids, arrays):
    """Raises DataError naming `where`, the array and the first row and id
    with NaN or inf values in any of `arrays` ({name: [N, k]})."""
    for name, values in arrays.items():
        metrics.check_rows(values, f"{where}: `{name}`",
                           cosine=False, ids=ids)


def save_embeddings(path, ids, **arrays):
    """Writes one embeddings file (`ids` and the named arrays of the
    contract) to exactly `path`, local or any tf.io.gfile path."""
    arrays = {"ids": np.asarray(ids, dtype=str),
              **{name: (np.asarray(value, dtype=str)
                        if name == FINGERPRINT_KEY
                        else np.asarray(value, dtype=np.float32))
                 for name, value in arrays.items()}}
    if "://" not in path:
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        return
    # Built in memory: np.savez seeks, which a gfile open for writing cannot.
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def _read_file(path, modalities, optional):
    """{key: array} of one file, its fingerprint (None without one)."""
    if not tf.io.gfile.exists(path):
        raise DataError(f"{path}: no such embeddings file")
    try:
        with tf.io.gfile.GFile(path, "rb") as f, \
                np.load(f, allow_pickle=False) as npz:
            missing = [k for k in ("ids", *modalities) if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: not an embeddings file: keys {missing} "
                    f"missing (has {sorted(npz.files)})")
            arrays = {k: npz[k] for k in ("ids", *modalities, *optional)
                      if k in npz.files}
            fingerprint = (str(npz[FINGERPRINT_KEY])
                           if FINGERPRINT_KEY in npz.files else None)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - zip, pickle or format errors
        raise DataError(f"{path}: cannot read the embeddings file "
                        f"({type(e).__name__}: {e})") from None
    ids = arrays["ids"]
    if ids.ndim != 1 or ids.dtype.kind not in "US":
        raise DataError(f"{path}: `ids` must be a 1-D string array, got "
                        f"dtype {ids.dtype} shape {ids.shape}")
    arrays["ids"] = ids.astype(str)
    for name in (*modalities, *optional):
        if name in arrays and (arrays[name].ndim != 2
                               or arrays[name].shape[0] != len(ids)):
            raise DataError(
                f"{path}: `{name}` has shape {arrays[name].shape}, expected "
                f"[{len(ids)}, k] rows aligned with `ids`")
    check_finite(path, arrays["ids"],
                 {k: v for k, v in arrays.items() if k != "ids"})
    return arrays, fingerprint


def read_embeddings(paths, modalities=MODALITIES, optional=()):
    """Reads embeddings files into one `Embeddings`, their rows concatenated.

    Args:
      paths: a list of paths, read in this order, or a data pattern (comma
        separated globs, each read in sorted order).
      modalities: the arrays every file must hold.
      optional: arrays read where every file holds them (else None).

    Raises:
      DataError: naming the file, for a missing or unreadable file, missing
        keys, misaligned rows, non-finite rows, a width that differs from the
        files before, differing model fingerprints, or an id that occurs
        twice.
    """
    if isinstance(paths, str):
        paths = readers.resolve_files(paths)
    if not paths:
        raise ValueError("no embeddings files given")
    files = [_read_file(path, modalities, optional) for path in paths]
    names = [name for name in (*modalities, *optional)
             if all(name in arrays for arrays, _ in files)]
    for (arrays, _), path in zip(files[1:], paths[1:]):
        for name in names:
            width, first = arrays[name].shape[1], files[0][0][name].shape[1]
            if width != first:
                raise DataError(f"{path}: {name} embeddings are {width}-d "
                                f"but {paths[0]}'s are {first}-d")
    fingerprint = _one_fingerprint(paths, [f for _, f in files])
    ids = [arrays["ids"] for arrays, _ in files]
    all_ids = np.concatenate(ids)
    check_unique(all_ids, ids, paths)
    out = {name: np.concatenate([arrays.pop(name) for arrays, _ in files])
           .astype(np.float32, copy=False) for name in names}
    return Embeddings(ids=all_ids, audio=out.get("audio"),
                      video=out.get("video"), fingerprint=fingerprint,
                      files=tuple(paths))


def _one_fingerprint(paths, fingerprints):
    marked = [(p, f) for p, f in zip(paths, fingerprints) if f is not None]
    if len({f for _, f in marked}) > 1:
        raise DataError("the embeddings files come from different models: "
                        + ", ".join(f"{p} has {FINGERPRINT_KEY}={f[:12]}..."
                                    for p, f in marked))
    if marked and len(marked) != len(paths):
        unmarked = [p for p, f in zip(paths, fingerprints) if f is None]
        raise DataError(f"{unmarked[0]} has no {FINGERPRINT_KEY} but "
                        f"{marked[0][0]} has one: cannot tell they come from "
                        "the same model")
    return marked[0][1] if marked else ""


def check_unique(all_ids, ids_per_file, paths):
    """Raises DataError naming an id that occurs twice and where."""
    unique, counts = np.unique(all_ids, return_counts=True)
    if len(unique) == len(all_ids):
        return
    dup = str(unique[np.argmax(counts > 1)])
    where = [p for p, i in zip(paths, ids_per_file) if (i == dup).any()]
    raise DataError(f"id {dup!r} occurs {counts.max()} times, in "
                    f"{', '.join(where)}: ids must be unique")
