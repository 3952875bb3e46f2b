"""A search index over a gallery of subspace embeddings.

`build_index` writes an index directory over one modality's embeddings;
`load_index` reads it back, checked against its manifest (and the model's
fingerprint), and `.search(queries, k)` returns the best-k gallery ids and
cosine scores, best first. Kinds: `exact` (the package's streaming top-K),
faiss `ivf_flat`, `ivf_sq8` and `hnsw`; `auto` is exact below
`EXACT_MAX_VECTORS` vectors and ivf_flat above, with the search breadth tuned
at build time to `target_recall` against exact search. Layout and tuning:
docs/design.md, "Search index".
"""

import dataclasses
import hashlib
import json
import logging
import numbers
import os
import time

import numpy as np

from yt8m_xmodal import config as config_lib
from yt8m_xmodal import embeddings as embeddings_lib
from yt8m_xmodal import metrics
from yt8m_xmodal import rundir
from yt8m_xmodal import writers
from yt8m_xmodal.errors import ConfigError, DataError

log = logging.getLogger("yt8m_xmodal")

FORMAT = "yt8m_xmodal.index"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
IDS_FILE = "ids.npy"
VECTORS_FILE = "vectors.npy"
FAISS_FILE = "index.faiss"

KINDS = ("exact", "ivf_flat", "ivf_sq8", "hnsw")
# Below this many gallery vectors `auto` builds an exact index.
EXACT_MAX_VECTORS = 100_000
# Tuning aims a little above 0.95 so that the recall of other queries, which
# the tuning sample only estimates, still reaches it.
TARGET_RECALL = 0.96
TUNE_K = 10
# Tuning gives up on the target once PLATEAU_STEPS wider searches in a row
# gained less than PLATEAU recall in all.
PLATEAU = 0.002
PLATEAU_STEPS = 3
MAX_TUNE_QUERIES = 1000
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
# k-means of the IVF kinds trains on at most this many vectors per list
# (faiss warns below 39) for this many iterations.
TRAIN_POINTS_PER_LIST = 64
TRAIN_ITERATIONS = 20
# Gallery rows converted, checked and added at a time.
CHUNK_ROWS = 65536


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """`yt8m-xmodal-index build`: an index over one modality's embeddings."""

    # What is indexed: the embeddings, the model they came from, which of
    # their modalities.
    embeddings_file: tuple[str, ...] = config_lib.option(
        (), "Comma-separated .npz files written by inference.py "
        "--embeddings_file (ids and the gallery's embeddings); rows "
        "concatenated in this order.")
    export_dir: str = config_lib.option(
        "", "The model export the embeddings came from; its hash is the "
        "index's model fingerprint.")
    model_fingerprint: str = config_lib.option(
        "", "The model fingerprint to record, when the files carry none and "
        "--export_dir is not given.")
    modality: str = config_lib.option(
        "video", "The gallery: video (songs query videos) or audio.")
    # Where it goes.
    index_dir: str = config_lib.option("", "The index directory to write.")
    overwrite: bool = config_lib.option(
        False, "Replace an existing --index_dir.")
    # How: the kind and its search parameters.
    kind: str = config_lib.option(
        "auto", "auto (exact below 100,000 vectors, else ivf_flat), exact, "
        "ivf_flat, ivf_sq8 or hnsw.")
    nlist: int = config_lib.option(
        0, "IVF kinds: inverted lists (0: the power of two nearest "
        "sqrt(N)).")
    search_breadth: int = config_lib.option(
        0, "nprobe (IVF) or efSearch (HNSW) to store (0: tune it to "
        "--target_recall).")
    target_recall: float = config_lib.option(
        TARGET_RECALL, "Recall@10 against exact search that tuning aims "
        "for.")
    seed: int = config_lib.option(0, "Seed of the training and tuning "
                                     "samples.")

    def __post_init__(self):
        object.__setattr__(self, "embeddings_file",
                           tuple(self.embeddings_file))
        for name in ("embeddings_file", "index_dir"):
            if not getattr(self, name):
                raise ConfigError(f"{{{name}}} is empty", **{name: ""})
        if self.modality not in ("audio", "video"):
            raise ConfigError("{modality} must be audio or video",
                              modality=self.modality)
        if self.kind != "auto" and self.kind not in KINDS:
            raise ConfigError(f"{{kind}} must be auto or one of "
                              f"{', '.join(KINDS)}", kind=self.kind)
        for name in ("nlist", "search_breadth"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{{{name}}} must be >= 0",
                                  **{name: getattr(self, name)})
        if not 0 < self.target_recall <= 1:
            raise ConfigError("{target_recall} must be in (0, 1]",
                              target_recall=self.target_recall)


def _faiss(kind):
    try:
        # faiss logs which CPU build it loads at INFO; not the user's concern.
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)
        import faiss  # noqa: PLC0415 - optional, only the faiss kinds need it
    except ImportError:
        raise ValueError(
            f"index kind {kind!r} needs faiss: pip install faiss-cpu "
            "(or yt8m_xmodal[index])") from None
    return faiss


# --------------------------------------------------------------------------
# Fingerprints and input files


def model_fingerprint(export_dir):
    """A sha256 over every file of an export directory (paths and contents).

    model_flags.json alone would not do: two exports of one training run
    share their flags but not their weights. Packing an export into a .tgz
    bundle and unpacking it keeps the bytes, so the fingerprint survives a
    bundle round trip.
    """
    if not os.path.isdir(export_dir):
        raise DataError(f"{export_dir}: no such model export directory")
    digest = hashlib.sha256()
    found = False
    for root, dirs, files in os.walk(export_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, export_dir).replace(os.sep, "/")
            digest.update(f"{rel}\0{writers.file_sha256(path)}\n".encode())
            found = True
    if not found:
        raise DataError(f"{export_dir}: the model export directory is empty")
    return digest.hexdigest()


def read_gallery(paths, modality="video", num_queries=MAX_TUNE_QUERIES,
                 seed=0):
    """Reads embeddings files as a gallery, and tuning queries.

    Args:
      paths: embeddings files (see embeddings.py), a list read in this
        order or a data pattern.
      modality: "audio" or "video", the gallery.
      num_queries: rows of the other modality to sample for tuning (the
        queries the index will really get); files without it tune on the
        gallery's own rows.

    Returns:
      (`embeddings.Embeddings` holding `modality` only, [Q, d] queries).

    Raises:
      DataError: as `embeddings.read_embeddings`, and for an all-zero row.
    """
    if modality not in embeddings_lib.MODALITIES:
        raise ValueError(f"modality must be audio or video, got {modality!r}")
    other = "audio" if modality == "video" else "video"
    emb = embeddings_lib.read_embeddings(
        paths if isinstance(paths, str) else list(paths), (modality,),
        optional=(other,))
    gallery = getattr(emb, modality)
    metrics.check_rows(gallery, f"`{modality}` of {', '.join(emb.files)}",
                       ids=emb.ids)
    query_rows = getattr(emb, other)
    if query_rows is None:
        query_rows = gallery
    setattr(emb, other, None)
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(len(emb), min(num_queries, len(emb)),
                              replace=False))
    return emb, np.asarray(query_rows[take], np.float32)


# --------------------------------------------------------------------------
# Gallery chunks


def _parts(vectors):
    """The gallery as a list of 2-D arrays (an array or a list of arrays)."""
    if isinstance(vectors, (list, tuple)):
        parts = [p if isinstance(p, np.ndarray) else np.asarray(p)
                 for p in vectors]
    else:
        parts = [vectors if isinstance(vectors, np.ndarray)
                 else np.asarray(vectors)]
    if not parts:
        raise DataError("the gallery is empty: no vectors")
    for i, p in enumerate(parts):
        if p.ndim != 2:
            raise DataError(f"gallery part {i} must be [N, d], got shape "
                            f"{p.shape}")
        if p.shape[1] != parts[0].shape[1] or p.shape[1] == 0:
            raise DataError(f"gallery part {i} is {p.shape[1]}-d, part 0 is "
                            f"{parts[0].shape[1]}-d")
    return parts


def _chunks(parts, rows=CHUNK_ROWS):
    """Yields float32 [<=rows, d] chunks of the gallery, in row order."""
    for part in parts:
        for start in range(0, part.shape[0], rows):
            yield np.asarray(part[start:start + rows], np.float32)


def _take(parts, rows):
    """Gallery rows at sorted global indices `rows`, as float32."""
    out, start = [], 0
    for part in parts:
        mine = rows[(rows >= start) & (rows < start + len(part))] - start
        if len(mine):
            out.append(np.asarray(part[mine], np.float32))
        start += len(part)
    return np.concatenate(out)


def _normalized(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top_k(queries, parts, k):
    """The package's exact top-k of queries over gallery parts, streamed."""
    return metrics.top_k_matches(queries, _chunks(parts), k)


def recall_at_k(found, exact):
    """Mean fraction of each query's exact top-k row indices found."""
    found, exact = np.asarray(found), np.asarray(exact)
    hits = [len(np.intersect1d(f, e)) for f, e in zip(found, exact)]
    return float(np.sum(hits) / exact.size)


# --------------------------------------------------------------------------
# Building


def default_nlist(num_vectors):
    """Inverted lists of an IVF index: the power of two nearest sqrt(N).

    Building costs ~N x nlist (assigning every vector to a list) and a
    search scans nprobe lists of ~N / nlist vectors: sqrt(N) keeps a 10M
    build to minutes on 2 cores while a search scans a few thousand vectors
    per probed list.
    """
    target = max(1.0, np.sqrt(num_vectors))
    return int(min(2 ** round(np.log2(target)), max(1, num_vectors // 39)))


def _positive_int(name, value):
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _make_faiss_index(kind, dim, num_vectors, params, parts, seed):
    faiss = _faiss(kind)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["M"],
                                    faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["efConstruction"]
        return index
    quantizer = faiss.IndexFlatIP(dim)
    nlist = params["nlist"]
    if kind == "ivf_flat":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist,
                                   faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
            faiss.METRIC_INNER_PRODUCT)
    index.own_fields = True
    quantizer.this.disown()
    index.cp.niter = TRAIN_ITERATIONS
    index.cp.seed = seed
    index.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
    index.cp.spherical = True  # centroids of unit vectors, for cosine
    n_train = min(num_vectors, TRAIN_POINTS_PER_LIST * nlist)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(num_vectors, n_train, replace=False))
    start = time.perf_counter()
    index.train(_normalized(_take(parts, rows)))
    log.info("trained %s (%d lists) on %d vectors in %.1f s", kind, nlist,
             n_train, time.perf_counter() - start)
    return index


def _search_param(kind):
    return "efSearch" if kind == "hnsw" else "nprobe"


def _set_search_param(index, kind, value):
    if kind == "hnsw":
        index.hnsw.efSearch = int(value)
    else:
        index.nprobe = int(value)


def _candidates(kind, params):
    """Search breadths tried when tuning, narrowest first (steps of ~1.5x)."""
    if kind == "hnsw":
        return [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
    nlist = params["nlist"]
    steps = {1, 2}
    for power in range(1, max(1, nlist).bit_length()):
        steps.update({2 ** power, 3 * 2 ** (power - 1)})
    return sorted({v for v in steps if v < nlist} | {nlist})


def _tune(index, kind, params, tune_queries, exact_rows, target_recall):
    """The smallest search breadth reaching target_recall on the queries.

    Returns (breadth, its recall, [(breadth, recall) tried]). When recall
    stops growing below the target (quantized codes cap it), the smallest
    breadth within PLATEAU of the best recall seen: searching wider would
    cost time and find no more.
    """
    q = _normalized(tune_queries)
    k = exact_rows.shape[1]
    curve = []
    for value in _candidates(kind, params):
        _set_search_param(index, kind, value)
        _, found = index.search(q, k)
        curve.append((int(value), recall_at_k(found, exact_rows)))
        if curve[-1][1] >= target_recall:
            return curve[-1][0], curve[-1][1], curve
        if (len(curve) > PLATEAU_STEPS
                and curve[-1][1] - curve[-1 - PLATEAU_STEPS][1] < PLATEAU):
            break
    best = max(r for _, r in curve)
    value, recall = next((v, r) for v, r in curve if r >= best - PLATEAU)
    log.warning("%s: recall@%d stops at %.4f, below the target %.3f; %s=%d "
                "(recall %.4f) kept", kind, k, best, target_recall,
                _search_param(kind), value, recall)
    return value, recall, curve


def _manifest_entry(path):
    return {"bytes": os.path.getsize(path), "sha256": writers.file_sha256(path)}


def _write_ids(ids, path):
    ids = np.asarray(ids)
    if ids.dtype.kind not in "US":
        ids = ids.astype(str)
    np.save(path, ids.astype(str), allow_pickle=False)


def _write_npy_chunks(path, parts, n, dim):
    """Writes the gallery to a float32 .npy chunk by chunk. Plain writes, not
    a writable memmap, whose dirty pages would count in the process's RSS
    until written back."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
              "fortran_order": False, "shape": (n, dim)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for chunk in _chunks(parts):
            f.write(np.ascontiguousarray(chunk).tobytes())


def build_index(ids, vectors, index_dir, model_fingerprint, kind="auto",
                modality="video", nlist=None, search_breadth=None,
                tune_queries=None, target_recall=TARGET_RECALL, hnsw_m=HNSW_M,
                overwrite=False, seed=0, sources=()):
    """Builds an index directory over a gallery of embeddings.

    Args:
      ids: [N] gallery ids (str), unique.
      vectors: the [N, d] gallery (array or memmap), or a list of [N_i, d]
        arrays concatenated in order; read in chunks, never copied whole
        (except into the index itself).
      index_dir: the directory to write; must not exist unless `overwrite`.
      model_fingerprint: a non-empty string naming the model that made the
        embeddings (see `model_fingerprint()`); `load_index` can check it.
      kind: "auto", or one of KINDS.
      modality: the gallery's modality, recorded in the manifest.
      nlist: inverted lists of the IVF kinds (default `default_nlist(N)`).
      search_breadth: `nprobe` (IVF) or `efSearch` (HNSW) to store; default:
        tuned to `target_recall` with `tune_queries`.
      tune_queries: [Q, d] queries to tune on (default: up to
        MAX_TUNE_QUERIES gallery rows, which, being in the gallery, are
        easier than real queries).
      target_recall: recall@10 the tuning aims for.
      hnsw_m: HNSW graph degree.
      sources: names of the input files, recorded in the manifest.

    Returns:
      The manifest (dict).

    Raises:
      DataError: non-finite or all-zero vectors, duplicate ids, ids and
        vectors of different lengths.
      ValueError: bad arguments, or `index_dir` exists.
    """
    if not isinstance(model_fingerprint, str) or not model_fingerprint:
        raise ValueError("model_fingerprint must be a non-empty string (e.g. "
                         "index.model_fingerprint(export_dir))")
    if kind != "auto" and kind not in KINDS:
        raise ValueError(f"kind must be auto or one of {KINDS}, got {kind!r}")
    if not 0 < target_recall <= 1:
        raise ValueError(f"target_recall must be in (0, 1], got "
                         f"{target_recall!r}")
    parts = _parts(vectors)
    n = sum(len(p) for p in parts)
    dim = parts[0].shape[1]
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(ids) != n:
        raise DataError(f"{len(ids)} ids for {n} gallery vectors")
    if n == 0:
        raise DataError("the gallery is empty: no vectors")
    embeddings_lib.check_unique(ids, [ids], ["the gallery"])
    offset = 0
    for part in parts:
        metrics.check_rows(part, "gallery", offset=offset,
                           ids=ids[offset:offset + len(part)])
        offset += len(part)
    if kind == "auto":
        kind = "exact" if n < EXACT_MAX_VECTORS else "ivf_flat"
        log.info("%d gallery vectors: %s index (auto: exact below %d)", n,
                 kind, EXACT_MAX_VECTORS)
    if os.path.lexists(index_dir):
        if not overwrite:
            raise ValueError(f"{index_dir} exists; pass overwrite=True to "
                             "replace it")
    parent = os.path.dirname(os.path.abspath(index_dir))
    if not os.path.isdir(parent):
        raise ValueError(f"{index_dir}: directory {parent} does not exist")

    params = {}
    if kind in ("ivf_flat", "ivf_sq8"):
        params["nlist"] = _positive_int(
            "nlist", default_nlist(n) if nlist is None else nlist)
        if params["nlist"] > n:
            raise ValueError(f"nlist={params['nlist']} exceeds the gallery "
                             f"size {n}")
    elif kind == "hnsw":
        params.update(M=_positive_int("hnsw_m", hnsw_m),
                      efConstruction=HNSW_EF_CONSTRUCTION)
    tuning = None
    start = time.perf_counter()
    with rundir.staged_directory(index_dir, prefix=".tmp-index-") as tmp:
        _write_ids(ids, os.path.join(tmp, IDS_FILE))
        if kind == "exact":
            _write_npy_chunks(os.path.join(tmp, VECTORS_FILE), parts, n, dim)
            files = [IDS_FILE, VECTORS_FILE]
        else:
            index = _make_faiss_index(kind, dim, n, params, parts, seed)
            for chunk in _chunks(parts):
                index.add(_normalized(chunk))
            name = _search_param(kind)
            if search_breadth is not None:
                params[name] = _positive_int("search_breadth", search_breadth)
            else:
                if tune_queries is None:
                    rng = np.random.default_rng(seed + 1)
                    rows = np.sort(rng.choice(n, min(n, MAX_TUNE_QUERIES),
                                              replace=False))
                    tune_queries = _take(parts, rows)
                tune_queries = np.asarray(tune_queries, np.float32)
                if tune_queries.ndim != 2 or tune_queries.shape[1] != dim:
                    raise DataError(f"tune_queries must be [Q, {dim}], got "
                                    f"shape {tune_queries.shape}")
                metrics.check_rows(tune_queries, "tune_queries")
                k = min(TUNE_K, n)
                exact_rows, _ = exact_top_k(tune_queries, parts, k)
                value, recall, curve = _tune(index, kind, params,
                                             tune_queries, exact_rows,
                                             target_recall)
                params[name] = int(value)
                tuning = {"param": name, "value": int(value),
                          f"recall@{k}": recall, "k": k,
                          "target_recall": target_recall,
                          "num_queries": int(len(tune_queries)),
                          "tried": curve}
                log.info("%s: %s=%d reaches recall@%d %.4f on %d tuning "
                         "queries (target %.3f)", kind, name, value, k,
                         recall, len(tune_queries), target_recall)
            _set_search_param(index, kind, params[name])
            _faiss(kind).write_index(index, os.path.join(tmp, FAISS_FILE))
            del index
            files = [IDS_FILE, FAISS_FILE]
        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION, "kind": kind,
            "backend": "yt8m_xmodal.metrics" if kind == "exact" else "faiss",
            "similarity": "cosine", "params": params, "tuning": tuning,
            "model_fingerprint": model_fingerprint, "modality": modality,
            "num_vectors": int(n), "dim": int(dim),
            "sources": [str(s) for s in sources],
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.perf_counter() - start, 3),
            "files": {f: _manifest_entry(os.path.join(tmp, f))
                      for f in files},
        }
        if kind != "exact":
            manifest["faiss_version"] = _faiss(kind).__version__
        with open(os.path.join(tmp, MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
    log.info("%s index of %d %d-d %s vectors written to %s in %.1f s", kind,
             n, dim, modality, index_dir, time.perf_counter() - start)
    return manifest


# --------------------------------------------------------------------------
# Loading and searching


class Index:
    """A loaded index. Use `load_index` to make one."""

    def __init__(self, index_dir, manifest, ids, backend):
        self.index_dir = index_dir
        self.manifest = manifest
        self.kind = manifest["kind"]
        self.ids = ids
        self.dim = manifest["dim"]
        self.model_fingerprint = manifest["model_fingerprint"]
        self.modality = manifest["modality"]
        self._backend = backend  # a float32 [N, d] memmap, or a faiss index

    def __len__(self):
        return len(self.ids)

    def search_rows(self, queries, k, search_breadth=None):
        """(gallery row indices int64 [Q, k'], cosine scores float32
        [Q, k']), best first, with k' = min(k, gallery size)."""
        k = min(_positive_int("k", k), len(self))
        queries = np.asarray(queries, np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise DataError(f"queries must be [Q, {self.dim}] for the index "
                            f"{self.index_dir}, got shape {queries.shape}")
        if self.kind == "exact":
            return exact_top_k(queries, [self._backend], k)
        metrics.check_rows(queries, "queries")
        faiss_index = self._backend
        name = _search_param(self.kind)
        breadth = self.manifest["params"][name]
        if search_breadth is not None:
            breadth = _positive_int("search_breadth", search_breadth)
        q = _normalized(queries)
        _set_search_param(faiss_index, self.kind, breadth)
        scores, rows = faiss_index.search(q, k)
        short = (rows < 0).any(axis=1)
        # A narrow search can find fewer than k vectors; widen it for those
        # queries (an IVF search over every list finds all of them).
        while short.any():
            limit = (self.manifest["params"].get("nlist")
                     if self.kind != "hnsw" else max(len(self), breadth))
            if breadth >= limit:
                raise DataError(f"{self.index_dir}: found fewer than {k} "
                                "vectors with the widest search")
            breadth = min(limit, 2 * breadth)
            _set_search_param(faiss_index, self.kind, breadth)
            s, r = faiss_index.search(q[short], k)
            scores[short], rows[short] = s, r
            short = (rows < 0).any(axis=1)
        return rows.astype(np.int64), scores.astype(np.float32)

    def search(self, queries, k, search_breadth=None):
        """(gallery ids [Q, k'] str, cosine scores float32 [Q, k']), best
        first; k' = min(k, gallery size)."""
        rows, scores = self.search_rows(queries, k, search_breadth)
        return self.ids[rows], scores


def _read_manifest(index_dir):
    path = os.path.join(index_dir, MANIFEST_FILE)
    if not os.path.isdir(index_dir):
        raise DataError(f"{index_dir}: no such index directory")
    if not os.path.isfile(path):
        raise DataError(f"{path} is missing: {index_dir} is not an index "
                        "built by yt8m_xmodal.index")
    try:
        with open(path) as f:
            manifest = json.load(f)
        ok = (manifest.get("format") == FORMAT
              and manifest.get("kind") in KINDS
              and isinstance(manifest.get("files"), dict))
    except (OSError, ValueError, AttributeError) as e:
        raise DataError(f"{path} is corrupt ({e})") from None
    if not ok:
        raise DataError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise DataError(f"{path}: index format version "
                        f"{manifest.get('version')}, this version reads "
                        f"{FORMAT_VERSION}: rebuild the index")
    return manifest


def _check_file(index_dir, name, entry, verify):
    path = os.path.join(index_dir, name)
    if not os.path.isfile(path):
        raise DataError(f"{path} is missing (listed in {MANIFEST_FILE})")
    size = os.path.getsize(path)
    if size != entry["bytes"]:
        raise DataError(f"{path} is corrupt or truncated: {size} bytes, the "
                        f"manifest says {entry['bytes']}")
    if verify and writers.file_sha256(path) != entry["sha256"]:
        raise DataError(f"{path} is corrupt: its sha256 does not match the "
                        "manifest")
    return path


def load_index(index_dir, expected_fingerprint=None, verify=True):
    """Loads and checks an index directory written by `build_index`.

    Args:
      index_dir: the directory.
      expected_fingerprint: when given, the model fingerprint the index must
        have been built with (the model now embedding the queries).
      verify: check every file's sha256 (reads each file once more); sizes
        are always checked.

    Raises:
      DataError: naming the file, when a file is missing, truncated or
        corrupt, or the index was built from another model's embeddings.
    """
    manifest = _read_manifest(index_dir)
    manifest_path = os.path.join(index_dir, MANIFEST_FILE)
    if (expected_fingerprint is not None
            and manifest.get("model_fingerprint") != expected_fingerprint):
        raise DataError(
            f"{manifest_path}: the index was built from embeddings of another "
            f"model (fingerprint {str(manifest.get('model_fingerprint'))[:16]}"
            f"..., this model's is {expected_fingerprint[:16]}...): rebuild "
            "the index with this model's embeddings")
    kind = manifest["kind"]
    payload = VECTORS_FILE if kind == "exact" else FAISS_FILE
    for name in (IDS_FILE, payload):
        if name not in manifest["files"]:
            raise DataError(f"{manifest_path} lists no {name}")
    paths = {name: _check_file(index_dir, name, entry, verify)
             for name, entry in manifest["files"].items()}
    n, dim = manifest["num_vectors"], manifest["dim"]
    try:
        ids = np.load(paths[IDS_FILE], allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable npy
        raise DataError(f"{paths[IDS_FILE]} is corrupt ({e})") from None
    if ids.shape != (n,):
        raise DataError(f"{paths[IDS_FILE]} holds {ids.shape} ids, the "
                        f"manifest says {n}")
    if kind == "exact":
        try:
            backend = np.load(paths[VECTORS_FILE], mmap_mode="r",
                              allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{paths[VECTORS_FILE]} is corrupt ({e})") from None
        if backend.shape != (n, dim) or backend.dtype != np.float32:
            raise DataError(f"{paths[VECTORS_FILE]} holds {backend.dtype} "
                            f"{backend.shape}, the manifest says float32 "
                            f"({n}, {dim})")
    else:
        faiss = _faiss(kind)
        try:
            backend = faiss.read_index(paths[FAISS_FILE])
        except Exception as e:  # noqa: BLE001 - faiss raises RuntimeError
            first = str(e).strip().splitlines()[0] if str(e).strip() else e
            raise DataError(f"{paths[FAISS_FILE]} is corrupt ({first})") from None
        if backend.ntotal != n or backend.d != dim:
            raise DataError(f"{paths[FAISS_FILE]} holds {backend.ntotal} "
                            f"{backend.d}-d vectors, the manifest says {n} "
                            f"{dim}-d")
    return Index(index_dir, manifest, ids, backend)
