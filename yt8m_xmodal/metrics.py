"""Exact cross-modal retrieval metrics, computed in query chunks.

Queries are one modality's embeddings and the gallery the other's, rows
aligned by video id (the true match of query i is gallery item i).
Similarities are computed one block of queries at a time on TensorFlow ops,
so the N x N matrix never exists. The rank of the true pair counts ties
against the query; Recall@K, median and mean rank, MRR and label mAP follow
from the ranks, and `fixed_gallery_metrics` averages seeded fixed-size
galleries. The conventions in full: docs/design.md, "Retrieval metrics".
"""

import itertools
import numbers

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from yt8m_xmodal.errors import ConfigError, DataError

# The Recall@K cut-offs reported when none are given.
DEFAULT_TOP_K = (1, 5, 10, 20)

# Scores held at once for one query chunk, [chunk_rows, gallery_rows]:
# 2**23 float32 = 32 MiB per block. Big enough for the matmul to run at full
# speed, small enough that 100k x 100k stays below 1 GB peak RSS.
SCORE_BLOCK_ELEMENTS = 2 ** 23
# mAP sorts int64 keys and sums float64 precisions for every score (about
# 60 bytes each with the temporaries), so its blocks are 16x smaller (as
# fast per query as 2**20 or 2**21); with labels, 100k x 100k peaked at
# ~895 MB RSS.
MAP_BLOCK_ELEMENTS = 2 ** 19

_SIGN_FLIP = 0x7FFFFFFF
# Where mAP's per-row sorts run; see _sort_descending.
_SORT_ON_HOST = not tf.config.list_physical_devices("GPU")


def parse_top_k(value):
    """Parses ``"1,5,10,20"`` (or a list of ints or strings, or one int).

    Returns a sorted tuple of distinct positive ints. Raises ConfigError
    naming ``top_k`` for empty input, text, zero or negative values.
    """
    def fail(why):
        raise ConfigError(
            "{top_k} must be a comma-separated list of positive integers "
            f"such as 1,5,10,20; {why}", top_k=value)

    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        parts = [value]
    else:
        try:
            parts = list(value)
        except TypeError:
            fail("it is not a list")
    if not parts or all(str(p).strip() == "" for p in parts):
        fail("it is empty")
    cutoffs = set()
    for part in parts:
        if isinstance(part, bool):
            fail(f"{part!r} is not an integer")
        if isinstance(part, numbers.Integral):
            k = int(part)
        else:
            text = str(part).strip()
            if not text.lstrip("+-").isdigit():
                fail(f"{text!r} is not an integer")
            k = int(text)
        if k < 1:
            fail(f"{k} is not positive")
        cutoffs.add(k)
    return tuple(sorted(cutoffs))


def _normalize_rows(x):
    """L2-normalizes rows. The one place this is done, so query chunks and
    gallery rows get bit-identical normalization."""
    return x / tf.norm(x, axis=1, keepdims=True)


# Rows per piece when checking or converting a whole embedding matrix, so no
# full-size temporary (bool mask, float32 copy) is ever made.
_CONVERT_ROWS = 8192


def _prepare_embeddings(x, name, cosine, allow_empty=False):
    """Checks an [N, d] embedding matrix; returns a float32 array or tensor.

    numpy input stays numpy (it is converted to tensors one chunk at a time
    later), tensors stay tensors: no full copy is made here except to cast
    another dtype to float32. Not normalized here.
    """
    if isinstance(x, (tf.Tensor, tf.Variable)):
        x = tf.cast(x, tf.float32)
    else:
        x = np.asarray(x)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number)
                                     or x.dtype == bool):
            raise DataError(f"{name} must be a numeric [N, d] array, got "
                            f"dtype {x.dtype}")
        x = x.astype(np.float32, copy=False)
    if len(x.shape) != 2:
        raise DataError(f"{name} must be a 2-D [N, d] array, got shape "
                        f"{tuple(x.shape)}")
    if x.shape[1] == 0:
        raise DataError(f"{name} has embedding dimension 0")
    if x.shape[0] == 0:
        if allow_empty:
            return x
        raise DataError(f"{name} is empty (0 rows): nothing to retrieve")
    check_rows(x, name, cosine, hint=" (use cosine=False for raw dot "
               "products)")
    return x


def check_rows(x, name, cosine=True, offset=0, ids=None, hint=""):
    """Raises DataError, naming `name` and the first bad row, for rows of an
    [N, d] array with NaN or inf values, or (with `cosine`) all zero: cosine
    similarity is undefined for them. Checked in pieces, so no full-size
    temporary is made.

    Args:
      offset: added to the row numbers named (`x` is part of a larger set).
      ids: the ids of the rows of `x`; the first bad row's id is named too.
      hint: appended to the message about all-zero rows.
    """
    for start in range(0, x.shape[0], _CONVERT_ROWS):
        piece = np.asarray(x[start:start + _CONVERT_ROWS])
        zero = False
        if not np.isfinite(piece).all():
            bad = np.flatnonzero(~np.isfinite(np.asarray(x)).all(axis=1))
            message = f"{name} has NaN or infinite values in {bad.size} row(s)"
        elif cosine and not (piece != 0).any(axis=1).all():
            bad = np.flatnonzero(~(np.asarray(x) != 0).any(axis=1))
            message, zero = f"{name} has {bad.size} all-zero row(s)", True
        else:
            continue
        message += f", first at row {offset + bad[0]}"
        if ids is not None:
            message += f" (id {str(ids[bad[0]])!r})"
        if zero:
            message += ": cosine similarity is undefined for them" + hint
        raise DataError(message)


def _rows_tensor(x, start, stop):
    """Rows [start, stop) of a numpy array or tensor, as a float32 tensor."""
    return tf.convert_to_tensor(x[start:stop], tf.float32)


def _gallery_tensor(gallery, cosine):
    """The gallery as one float32 tensor, rows normalized when cosine.

    Built piece by piece, so the peak is the result plus the pieces (never a
    second full-size temporary on top).
    """
    if isinstance(gallery, tf.Tensor) and not cosine:
        return gallery
    pieces = []
    for start in range(0, gallery.shape[0], _CONVERT_ROWS):
        piece = _rows_tensor(gallery, start, start + _CONVERT_ROWS)
        pieces.append(_normalize_rows(piece) if cosine else piece)
    return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=0)


def _prepare_pair(queries, gallery, cosine, names=("queries", "gallery")):
    """Checked queries (as given) and the gallery tensor (normalized when
    cosine)."""
    q = _prepare_embeddings(queries, names[0], cosine)
    g = _prepare_embeddings(gallery, names[1], cosine)
    if q.shape[0] != g.shape[0]:
        raise DataError(
            f"{names[0]} has {q.shape[0]} rows but {names[1]} has "
            f"{g.shape[0]}: rows must be aligned by video id, one true pair "
            "per row")
    if q.shape[1] != g.shape[1]:
        raise DataError(f"{names[0]} are {q.shape[1]}-d but {names[1]} are "
                        f"{g.shape[1]}-d")
    return q, _gallery_tensor(g, cosine)


def _chunk_rows(chunk_size, gallery_rows, block_elements):
    """Query rows per chunk: given, or as many as fit the score budget."""
    if chunk_size is None:
        return max(1, block_elements // max(1, gallery_rows))
    if (isinstance(chunk_size, bool)
            or not isinstance(chunk_size, numbers.Integral)
            or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got "
                         f"{chunk_size!r}")
    return int(chunk_size)


def _true_pair_ranks_of_block(scores, start):
    """Ranks of the true pairs (columns start + i) in a [b, M] score block."""
    rows = tf.shape(scores)[0]
    true_scores = tf.gather(scores, start + tf.range(rows), axis=1,
                            batch_dims=1)
    # Counting ">=" includes the true pair itself and every tie: 1 + higher +
    # other equal. The true score comes from this same matmul, so it is
    # bit-identical to its column and never ties with itself by accident.
    return tf.reduce_sum(
        tf.cast(scores >= true_scores[:, None], tf.int32), axis=1)


def _block_scores(query_chunk, gallery, cosine):
    if cosine:
        query_chunk = _normalize_rows(query_chunk)
    return tf.matmul(query_chunk, gallery, transpose_b=True)


# Not jit_compile: XLA fuses the comparison and the count into one pass and
# runs a little faster on CPU, but its compiler and buffers cost more memory
# than the bounded-memory contract allows at 100k x 100k (bench/bench_eval.py).
@tf.function(reduce_retracing=True)
def _chunk_ranks(query_chunk, gallery, start, cosine):
    return _true_pair_ranks_of_block(
        _block_scores(query_chunk, gallery, cosine), start)


def _order_preserving_int(scores):
    """Maps float32 scores to int32 keys with the same order (equal iff
    equal)."""
    # -0.0 == 0.0 but their bits differ; make them one key.
    scores = tf.where(tf.equal(scores, 0.0), tf.zeros_like(scores), scores)
    bits = tf.bitcast(scores, tf.int32)
    # Negative floats order backwards as sign-magnitude ints: flip magnitude.
    return tf.where(bits < 0,
                    tf.bitwise.bitwise_xor(bits, tf.constant(_SIGN_FLIP,
                                                             tf.int32)),
                    bits)


def _ap_sort_keys(scores, relevant):
    """int64 sort keys for AP: the score in the high bits, then 1 for
    irrelevant / 0 for relevant, so a descending sort puts irrelevant items
    first among equal scores (the pessimistic order)."""
    return (tf.cast(_order_preserving_int(scores), tf.int64) * 2
            + tf.cast(tf.logical_not(relevant), tf.int64))


def _sort_descending(keys):
    """Sorts each row of [b, M] int64 keys, largest first.

    Where no GPU is present this sorts with numpy: its SIMD int64 sort is
    much faster than tf.sort (a top_k over the whole row) on the CPU
    (bench/bench_eval.py), and the sort is most of mAP's cost. On a GPU
    tf.sort stays on the device.
    """
    if _SORT_ON_HOST:
        ascending = np.sort(keys.numpy(), axis=1)
        return tf.constant(ascending[:, ::-1])
    return tf.sort(keys, axis=1, direction="DESCENDING")


@tf.function(reduce_retracing=True)
def _average_precision_of_sorted(keys):
    """Exact AP per row from keys sorted best first (see _ap_sort_keys).

    Returns (ap [b] float64, num_relevant [b] int32); ap is 0 where a row has
    no relevant item.
    """
    relevant_sorted = tf.equal(tf.bitwise.bitwise_and(keys, 1), 0)
    hits = tf.cumsum(tf.cast(relevant_sorted, tf.int32), axis=1)
    positions = tf.range(1, tf.shape(keys)[1] + 1, dtype=tf.float64)
    precision = tf.cast(hits, tf.float64) / positions[None, :]
    precision_sum = tf.reduce_sum(
        tf.where(relevant_sorted, precision, tf.zeros_like(precision)), axis=1)
    num_relevant = hits[:, -1]
    ap = precision_sum / tf.cast(tf.maximum(num_relevant, 1), tf.float64)
    return ap, num_relevant


@tf.function(reduce_retracing=True)
def _chunk_ranks_and_ap_keys(query_chunk, gallery, start, cosine,
                             query_labels, gallery_labels):
    scores = _block_scores(query_chunk, gallery, cosine)
    ranks = _true_pair_ranks_of_block(scores, start)
    # [M, C] sparse x [C, b] dense: shared-label counts without ever holding
    # the gallery's dense [M, C] multi-hot matrix.
    shared = tf.sparse.sparse_dense_matmul(gallery_labels, query_labels,
                                           adjoint_b=True)
    relevant = tf.transpose(shared) > 0
    return ranks, _ap_sort_keys(scores, relevant)


def _label_indices(labels, num_rows, name):
    """Label sets as ([nnz, 2] int64 (row, class) indices, num_classes or None).

    Accepts a multi-hot [N, C] array/tensor (nonzero = label, C fixed), a
    tf.SparseTensor [N, C], a tf.RaggedTensor of label ids, or a sequence of
    label-id sequences (C then comes from the largest id).
    """
    if isinstance(labels, tf.SparseTensor):
        if labels.shape.rank != 2:
            raise DataError(f"{name} must be [N, C], got shape {labels.shape}")
        rows, num_classes = labels.dense_shape.numpy()
        values = labels.values.numpy()
        indices = labels.indices.numpy()[values != 0]
    elif isinstance(labels, tf.RaggedTensor):
        rows = int(labels.nrows())
        ids = labels.flat_values.numpy()
        row_ids = labels.value_rowids().numpy()
        indices = np.stack([row_ids, ids], axis=1) if ids.size else (
            np.zeros((0, 2), np.int64))
        num_classes = None
    elif isinstance(labels, (np.ndarray, tf.Tensor, tf.Variable)):
        dense = np.asarray(labels)
        if dense.ndim != 2:
            raise DataError(f"{name} must be a multi-hot [N, C] array or a "
                            f"list of label-id lists, got shape {dense.shape}")
        rows, num_classes = dense.shape
        indices = np.argwhere(dense != 0)
    else:
        # One flat array and a length per row (not one array per row: at
        # 100k videos the per-row objects alone cost tens of MB).
        label_lists = list(labels)
        rows = len(label_lists)
        try:
            lengths = np.array([len(r) for r in label_lists], np.int64)
        except TypeError:
            raise DataError(f"{name} must be a multi-hot [N, C] array or a "
                            "list of label-id lists") from None
        flat = np.asarray(list(itertools.chain.from_iterable(label_lists)))
        if flat.size and not np.issubdtype(flat.dtype, np.integer):
            row = int(np.searchsorted(np.cumsum(lengths), 0, side="right"))
            raise DataError(f"{name} must hold integer label ids, got "
                            f"{flat.dtype} values (row {row}: "
                            f"{list(label_lists[row])[:5]})")
        indices = np.stack([np.repeat(np.arange(rows), lengths),
                            flat.astype(np.int64).reshape(-1)], axis=1)
        num_classes = None
    if rows != num_rows:
        raise DataError(f"{name} has {rows} rows but the embeddings have "
                        f"{num_rows}: rows must be aligned by video id")
    indices = np.asarray(indices, np.int64).reshape(-1, 2)
    if indices.size and indices[:, 1].min() < 0:
        row = indices[indices[:, 1].argmin(), 0]
        raise DataError(f"{name} row {row} has a negative label id")
    return indices, (None if num_classes is None else int(num_classes))


def _label_tensors(query_labels, gallery_labels, num_queries, num_gallery):
    """Query labels as sorted unique (row, class) numpy indices, the number of
    classes C, and the gallery labels as a sparse [M, C] 0/1 tensor."""
    q_idx, q_classes = _label_indices(query_labels, num_queries,
                                      "query labels")
    g_idx, g_classes = _label_indices(gallery_labels, num_gallery,
                                      "gallery labels")
    if (q_classes is not None and g_classes is not None
            and q_classes != g_classes):
        raise DataError(f"query labels have {q_classes} classes but gallery "
                        f"labels have {g_classes}")
    largest = max([i[:, 1].max() + 1 for i in (q_idx, g_idx) if i.size] or [1])
    num_classes = max(largest, q_classes or 0, g_classes or 0)

    # Sorted by row, then class (np.unique); repeated ids in one row would
    # count twice in the shared-label dot product, so they are dropped too.
    q_idx = np.unique(q_idx, axis=0) if q_idx.size else q_idx
    g_idx = np.unique(g_idx, axis=0) if g_idx.size else g_idx
    gallery = tf.SparseTensor(g_idx, tf.ones([g_idx.shape[0]], tf.float32),
                              [num_gallery, num_classes])
    return q_idx, num_classes, gallery


def _multi_hot_rows(indices, start, stop, num_classes):
    """Dense [stop - start, C] multi-hot rows from sorted (row, class) pairs."""
    lo, hi = np.searchsorted(indices[:, 0], [start, stop])
    dense = np.zeros((stop - start, num_classes), np.float32)
    dense[indices[lo:hi, 0] - start, indices[lo:hi, 1]] = 1.0
    return dense


def _ranks_and_average_precision(queries, gallery, chunk_rows, cosine,
                                 labels=None):
    """Runs the chunked loop; returns numpy ranks [N] (and ap, num_relevant)."""
    n = queries.shape[0]
    ranks, aps, num_relevant = [], [], []
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        chunk = _rows_tensor(queries, start, stop)
        start_t = tf.constant(start, tf.int32)
        if labels is None:
            ranks.append(_chunk_ranks(chunk, gallery, start_t, cosine).numpy())
            continue
        query_labels, num_classes, gallery_labels = labels
        chunk_labels = _multi_hot_rows(query_labels, start, stop, num_classes)
        r, keys = _chunk_ranks_and_ap_keys(chunk, gallery, start_t, cosine,
                                           chunk_labels, gallery_labels)
        ap, rel = _average_precision_of_sorted(_sort_descending(keys))
        ranks.append(r.numpy())
        aps.append(ap.numpy())
        num_relevant.append(rel.numpy())
    ranks = np.concatenate(ranks).astype(np.int64)
    if labels is None:
        return ranks, None, None
    return ranks, np.concatenate(aps), np.concatenate(num_relevant)


def true_pair_ranks(queries, gallery, chunk_size=None, cosine=True):
    """Rank of each query's true match (gallery row i for query row i).

    Args:
      queries: [N, d] embeddings of one modality.
      gallery: [N, d] embeddings of the other modality, rows aligned by id.
      chunk_size: query rows per block; default fills SCORE_BLOCK_ELEMENTS.
      cosine: cosine similarity (default) or raw dot product.

    Returns:
      int64 numpy array [N] of ranks in 1..N, ties against the query (see the
      module docstring).

    Example:
      >>> true_pair_ranks([[1., 0.], [0., 1.]], [[1., 0.], [1., 1.]]).tolist()
      [1, 1]
    """
    q, g = _prepare_pair(queries, gallery, cosine)
    rows = _chunk_rows(chunk_size, g.shape[0], SCORE_BLOCK_ELEMENTS)
    return _ranks_and_average_precision(q, g, rows, cosine)[0]


def true_pair_ranks_of_scores(score_rows, num_queries, chunk_size=None):
    """Rank of each query's true match under any pairwise score.

    For scores that are not a similarity of two embeddings (a likelihood
    ratio, a masked score); `true_pair_ranks` covers embeddings. The rank and
    its ties follow the module docstring, in the scores' own dtype.

    Args:
      score_rows: callable(start, stop) -> [stop - start, M] scores (numpy or
        tensor, any float dtype) of queries start..stop-1 against the whole
        gallery; the true match of query i is gallery column i.
      num_queries: N, the number of queries.
      chunk_size: query rows per call; default fills SCORE_BLOCK_ELEMENTS
        for a gallery of N.

    Returns:
      int64 numpy array [N] of ranks in 1..M.

    Example:
      >>> scores = np.array([[0.9, 0.1], [0.8, 0.2]])
      >>> true_pair_ranks_of_scores(lambda a, b: scores[a:b], 2).tolist()
      [1, 2]
    """
    rows = _chunk_rows(chunk_size, num_queries, SCORE_BLOCK_ELEMENTS)
    ranks = []
    for start in range(0, num_queries, rows):
        stop = min(num_queries, start + rows)
        scores = tf.convert_to_tensor(score_rows(start, stop))
        ranks.append(_true_pair_ranks_of_block(scores, start).numpy())
    return np.concatenate(ranks).astype(np.int64)


def rank_metrics(ranks, top_k=DEFAULT_TOP_K):
    """Recall@K, median rank, mean rank and MRR from true-pair ranks.

    Returns a dict with "recall@K" for each K, "median_rank" (numpy's median
    convention: mean of the two middle ranks for an even count), "mean_rank",
    "mrr" and "num_queries".
    """
    top_k = parse_top_k(top_k)
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise DataError(f"ranks must be a non-empty 1-D array, got shape "
                        f"{ranks.shape}")
    if ranks.min() < 1:
        raise DataError(f"ranks start at 1, got {ranks.min()}")
    r = tf.constant(ranks, tf.float64)
    result = {f"recall@{k}": float(tf.reduce_mean(tf.cast(r <= k, tf.float64)))
              for k in top_k}
    result["median_rank"] = float(
        tfp.stats.percentile(r, 50.0, interpolation="midpoint"))
    result["mean_rank"] = float(tf.reduce_mean(r))
    result["mrr"] = float(tf.reduce_mean(1.0 / r))
    result["num_queries"] = int(ranks.size)
    return result


def retrieval_metrics(queries, gallery, top_k=DEFAULT_TOP_K,
                      query_labels=None, gallery_labels=None, chunk_size=None,
                      cosine=True):
    """Exact retrieval metrics of queries against an aligned gallery.

    Args:
      queries: [N, d] embeddings of the query modality.
      gallery: [N, d] embeddings of the other modality; row i is the true
        match of query i.
      top_k: cut-offs for Recall@K: ints or a "1,5,10,20" string.
      query_labels, gallery_labels: optional label sets for mAP, both or
        neither: multi-hot [N, C] arrays, tf.SparseTensor, tf.RaggedTensor or
        lists of label-id lists. Prefer the sparse forms for large N (a dense
        100k x 3862 gallery label matrix alone is 1.5 GB).
      chunk_size: query rows per block; default fits SCORE_BLOCK_ELEMENTS
        scores (MAP_BLOCK_ELEMENTS with labels).
      cosine: cosine similarity (default) or raw dot product.

    Returns:
      {"recall@K": float for each K, "median_rank", "mean_rank", "mrr",
       "num_queries": N} plus "map" and "map_num_queries" (queries with at
      least one relevant item) when labels are given. Conventions for ties,
      median and mAP are in the module docstring.

    Example:
      >>> m = retrieval_metrics([[1., 0.], [0., 1.]], [[1., .1], [.1, 1.]],
      ...                       top_k=(1,))
      >>> m["recall@1"], m["median_rank"], m["num_queries"]
      (1.0, 1.0, 2)
    """
    top_k = parse_top_k(top_k)
    q, g = _prepare_pair(queries, gallery, cosine)
    if (query_labels is None) != (gallery_labels is None):
        raise ValueError("give both query_labels and gallery_labels for mAP, "
                         "or neither")
    if query_labels is None:
        rows = _chunk_rows(chunk_size, g.shape[0], SCORE_BLOCK_ELEMENTS)
        ranks, _, _ = _ranks_and_average_precision(q, g, rows, cosine)
        return rank_metrics(ranks, top_k)
    labels = _label_tensors(query_labels, gallery_labels, q.shape[0],
                            g.shape[0])
    rows = _chunk_rows(chunk_size, g.shape[0], MAP_BLOCK_ELEMENTS)
    ranks, ap, num_relevant = _ranks_and_average_precision(
        q, g, rows, cosine, labels)
    result = rank_metrics(ranks, top_k)
    has_relevant = num_relevant > 0
    result["map"] = (float(np.mean(ap[has_relevant])) if has_relevant.any()
                     else float("nan"))
    result["map_num_queries"] = int(has_relevant.sum())
    return result


def csls_pair(queries, gallery, k, chunk_size=None):
    """Embeddings whose dot product ranks like CSLS (Conneau et al. 2018).

    CSLS(q, g) = 2 cos(q, g) - r(q) - r(g), where r(g) is the mean cosine of
    gallery item g to its k nearest queries and r(q) that of q to its k
    nearest gallery items: items that are near everything (hubs) are pushed
    down. r(q) is one constant per query, so the ranking of a query's gallery
    is that of cos(q, g) - r(g) / 2, the dot product of [q / |q|, 1] and
    [g / |g|, -r(g) / 2]. The statistics come from the query and gallery sets
    themselves, at query time: nothing is stored with a model.

    Args:
      queries: [N, d] embeddings of the query modality.
      gallery: [M, d] embeddings of the other modality.
      k: neighbours in r(g) (capped at N).
      chunk_size: gallery rows per block of similarities.

    Returns:
      (queries [N, d + 1], gallery [M, d + 1]) float32 numpy arrays; score
      them with `cosine=False`.

    Example:
      >>> q, g = csls_pair(np.eye(2), np.eye(2), k=1)
      >>> q @ g.T
      array([[ 0.5, -0.5],
             [-0.5,  0.5]], dtype=float32)
    """
    if int(k) < 1:
        raise ConfigError("{csls_k} must be >= 1 for CSLS", csls_k=k)
    q = _normalize_rows(_prepare_embeddings(queries, "queries", True))
    g = _normalize_rows(_prepare_embeddings(gallery, "gallery", True))
    k = min(int(k), int(q.shape[0]))
    rows = _chunk_rows(chunk_size, int(q.shape[0]), SCORE_BLOCK_ELEMENTS)
    hubness = []
    for start in range(0, int(g.shape[0]), rows):
        sims = tf.matmul(g[start:start + rows], q, transpose_b=True)
        hubness.append(tf.reduce_mean(tf.math.top_k(sims, k).values, axis=1))
    r = tf.concat(hubness, axis=0)[:, tf.newaxis]
    q_out = tf.concat([q, tf.ones([tf.shape(q)[0], 1], q.dtype)], axis=1)
    g_out = tf.concat([g, -r / 2], axis=1)
    return (np.asarray(q_out, np.float32), np.asarray(g_out, np.float32))


def cross_modal_metrics(audio, video, labels=None, top_k=DEFAULT_TOP_K,
                        chunk_size=None, cosine=True, csls_k=0):
    """Retrieval metrics in both directions for aligned audio/video embeddings.

    Args:
      audio, video: [N, d] embeddings, row i of each from the same video.
      labels: optional label sets of the N videos (any form
        `retrieval_metrics` takes), used for mAP in both directions.
      top_k, chunk_size, cosine: as in `retrieval_metrics`.
      csls_k: > 0 ranks by CSLS over k neighbours within the evaluated set
        (see `csls_pair`; cosine is then implied) instead of the plain
        similarity.

    Returns:
      {"num_queries": N, "audio_to_video": {...}, "video_to_audio": {...}},
      each direction as returned by `retrieval_metrics`.
    """
    names = ("audio embeddings", "video embeddings")
    audio = _prepare_embeddings(audio, names[0], cosine)
    video = _prepare_embeddings(video, names[1], cosine)
    if audio.shape != video.shape:
        raise DataError(f"audio embeddings have shape {tuple(audio.shape)} "
                        f"but video embeddings {tuple(video.shape)}: rows "
                        "must be aligned by video id, one true pair per row")
    kwargs = dict(top_k=top_k, chunk_size=chunk_size, cosine=cosine)
    if labels is not None:
        kwargs.update(query_labels=labels, gallery_labels=labels)
    if csls_k:
        kwargs["cosine"] = False
        return {
            "num_queries": int(audio.shape[0]),
            "audio_to_video": retrieval_metrics(
                *csls_pair(audio, video, csls_k, chunk_size), **kwargs),
            "video_to_audio": retrieval_metrics(
                *csls_pair(video, audio, csls_k, chunk_size), **kwargs),
        }
    return {
        "num_queries": int(audio.shape[0]),
        "audio_to_video": retrieval_metrics(audio, video, **kwargs),
        "video_to_audio": retrieval_metrics(video, audio, **kwargs),
    }


DIRECTIONS = ("audio_to_video", "video_to_audio")


def gallery_draw(num_videos, gallery_size, seed):
    """Sorted rows of one seeded draw of `gallery_size` of `num_videos`
    videos without replacement (all rows when the size covers them)."""
    if gallery_size >= num_videos:
        return np.arange(num_videos)
    return np.sort(np.random.default_rng(seed).choice(
        num_videos, gallery_size, replace=False))


def fixed_gallery_metrics(audio, video, gallery_size, draws, labels=None,
                          top_k=DEFAULT_TOP_K, cosine=True, csls_k=0,
                          ids=None):
    """Metrics over seeded draws of `gallery_size`-video galleries, the
    protocol most papers report Recall@K with.

    Draw d (seed d, for d < `draws`) picks `gallery_size` videos; their audio
    queries search their videos and back (CSLS, with csls_k > 0, within the
    draw). A size covering the whole set is one draw: the set itself. With
    `ids` the draws are taken over the videos sorted by id, so a draw depends
    only on the set of videos, not on the order of files or records.

    Returns:
      The `cross_modal_metrics` layout holding the mean over the draws, with
      "num_queries" (the gallery size), "num_draws" and, per direction,
      "<metric>_std" (the standard deviation over the draws).
    """
    num_videos = len(audio)
    if gallery_size < 2:
        raise ConfigError("{gallery_size} must be >= 2",
                          gallery_size=gallery_size)
    if draws < 1:
        raise ConfigError("{gallery_draws} must be >= 1", gallery_draws=draws)
    seeds = range(draws) if gallery_size < num_videos else (0,)
    order = (np.arange(num_videos) if ids is None
             else np.argsort(np.asarray(ids).astype(str), kind="stable"))
    results = []
    for seed in seeds:
        rows = order[gallery_draw(num_videos, gallery_size, seed)]
        results.append(cross_modal_metrics(
            audio[rows], video[rows],
            labels=None if labels is None else [labels[i] for i in rows],
            top_k=top_k, cosine=cosine, csls_k=csls_k))
    mean = {"num_queries": min(gallery_size, num_videos),
            "num_draws": len(results)}
    for direction in DIRECTIONS:
        mean[direction] = {}
        for key in results[0][direction]:
            values = [r[direction][key] for r in results]
            mean[direction][key] = float(np.mean(values))
            mean[direction][f"{key}_std"] = float(np.std(values))
    return mean


@tf.function(reduce_retracing=True)
def _merge_top_k(query_chunk, gallery_chunk, offset, best_scores,
                 best_indices, k, cosine):
    scores = _block_scores(query_chunk, gallery_chunk, cosine)
    indices = offset + tf.range(tf.shape(gallery_chunk)[0], dtype=tf.int64)
    indices = tf.broadcast_to(indices[None, :], tf.shape(scores))
    # Earlier (lower-index) candidates come first, and top_k keeps the first
    # of equal scores, so ties always resolve to the lower gallery index.
    scores = tf.concat([best_scores, scores], axis=1)
    indices = tf.concat([best_indices, indices], axis=1)
    k = tf.minimum(k, tf.shape(scores)[1])
    best_scores, positions = tf.math.top_k(scores, k=k, sorted=True)
    return best_scores, tf.gather(indices, positions, axis=1, batch_dims=1)


class StreamingTopK:
    """Best-k gallery matches per query, fed one gallery chunk at a time.

    Holds only the queries and the running [N, k] best scores/indices, so the
    gallery can be larger than memory. Gallery indices count rows across all
    chunks in the order they were fed. Equal scores resolve to the lower
    gallery index (so a true pair's position in the list is <= its rank).

    Args:
      queries: [N, d] query embeddings.
      k: matches to keep per query.
      chunk_size: query rows per block; default fills SCORE_BLOCK_ELEMENTS
        for each gallery chunk.
      cosine: cosine similarity (default) or raw dot product.

    Example:
      >>> top = StreamingTopK([[1., 0.]], k=2)
      >>> top.update([[0., 1.]]); top.update([[1., 0.], [1., 1.]])
      >>> top.result()[0].tolist()
      [[1, 2]]
    """

    def __init__(self, queries, k, chunk_size=None, cosine=True):
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = int(k)
        self.cosine = cosine
        self.chunk_size = chunk_size
        self._queries = _prepare_embeddings(queries, "queries", cosine)
        n = self._queries.shape[0]
        self._scores = tf.zeros([n, 0], tf.float32)
        self._indices = tf.zeros([n, 0], tf.int64)
        self.num_gallery = 0

    def update(self, gallery_chunk):
        """Merges one [M_j, d] gallery chunk into the running top k."""
        name = f"gallery chunk starting at row {self.num_gallery}"
        g = _prepare_embeddings(gallery_chunk, name, self.cosine,
                                allow_empty=True)
        if g.shape[1] != self._queries.shape[1]:
            raise DataError(f"{name} is {g.shape[1]}-d but the queries are "
                            f"{self._queries.shape[1]}-d")
        if g.shape[0] == 0:
            return
        g = _gallery_tensor(g, self.cosine)
        n = self._queries.shape[0]
        rows = _chunk_rows(self.chunk_size, g.shape[0], SCORE_BLOCK_ELEMENTS)
        offset = tf.constant(self.num_gallery, tf.int64)
        k = tf.constant(self.k, tf.int32)
        scores, indices = [], []
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            s, i = _merge_top_k(_rows_tensor(self._queries, start, stop), g,
                                offset,
                                self._scores[start:stop],
                                self._indices[start:stop], k, self.cosine)
            scores.append(s)
            indices.append(i)
        self._scores = tf.concat(scores, axis=0)
        self._indices = tf.concat(indices, axis=0)
        self.num_gallery += int(g.shape[0])

    def result(self):
        """(indices int64 [N, min(k, gallery size)], scores float32 [N, ...]),
        best first."""
        if self.num_gallery == 0:
            raise DataError("the gallery is empty: no gallery chunk had rows")
        return self._indices.numpy(), self._scores.numpy()


def top_k_matches(queries, gallery, k, chunk_size=None, cosine=True):
    """Top-k gallery matches for every query, streaming over the gallery.

    Args:
      queries: [N, d] query embeddings.
      gallery: a [M, d] array/tensor (or list of rows), or an iterable of
        [M_j, d] chunks (a list of arrays, a generator, a tf.data.Dataset),
        consumed once, so a gallery larger than memory works.
      k: matches per query (fewer when the gallery is smaller).
      chunk_size, cosine: as in `StreamingTopK`.

    Returns:
      (indices int64 [N, k] into the gallery rows in order, scores float32
      [N, k]), best first; equal scores resolve to the lower index.
    """
    top = StreamingTopK(queries, k, chunk_size=chunk_size, cosine=cosine)
    one_matrix = isinstance(gallery, (np.ndarray, tf.Tensor, tf.Variable)) or (
        isinstance(gallery, (list, tuple)) and len(gallery) > 0
        and np.ndim(gallery[0]) == 1)  # a list of rows, not of chunks
    if one_matrix:
        gallery = [gallery]
    for chunk in gallery:
        top.update(chunk)
    return top.result()
