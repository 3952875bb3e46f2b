"""Float64 linear algebra for canonical correlation analysis (CCA).

TensorFlow ops only, so it runs inside `tf.function`, under XLA and on a GPU.
Notation follows Andrew et al., "Deep Canonical Correlation Analysis", ICML
2013: T = Σ11^{-1/2} Σ12 Σ22^{-1/2}, whose singular values are the canonical
correlations. Ridges are relative to each view's mean variance, so the same
`r` works at any input scale; `global_statistics` all-reduces per-replica
sufficient statistics (docs/design.md, "CCA linear algebra").
"""

import collections

import tensorflow as tf

# A view whose variance is below this fraction of its raw second moment
# mean(h**2) is constant up to rounding: float32 carries ~6e-8 relative
# precision, so variance below (1e-7)**2 of the squared magnitude is noise.
RELATIVE_VARIANCE_FLOOR = 1e-14
# Absolute floor on the mean variance of a view (all-zero batches), chosen so
# that its powers down to -2 stay far inside the float64 range.
ABSOLUTE_VARIANCE_FLOOR = 1e-60

CCAStatistics = collections.namedtuple(
    "CCAStatistics",
    ["count", "mean1", "mean2", "cov11", "cov22", "cov12",
     "mean_square1", "mean_square2", "class_cross", "class_pairs"])
CCAStatistics.__doc__ = """Global-batch CCA statistics, all float64.

count: number of examples m (scalar).
mean1 [o1], mean2 [o2]: per-feature means.
cov11 [o1,o1], cov22 [o2,o2], cov12 [o1,o2]: unbiased (m-1) covariances, no
    ridge.
mean_square1, mean_square2: mean over examples and features of h**2 (raw,
    uncentred), used to tell a constant view from a varying one.
class_cross [o1,o2] or None: Σ_c s1_c s2_cᵀ with s_c the sum of the centred
    rows labelled c, i.e. H1cᵀ (L Lᵀ) H2c for multi-hot labels L.
class_pairs or None: Σ_c n_c², the number of (i, j) pairs counted in
    class_cross (a pair sharing two labels counts twice).
"""


def compute_dtype_for(dtype):
    """The dtype a loss returns: the input's, but at least float32."""
    dtype = tf.as_dtype(dtype)
    return tf.float64 if dtype == tf.float64 else tf.float32


def replica_sum(values):
    """Sums a nest of tensors over replicas; identity outside tf.distribute.

    In a replica context with several replicas this is
    `ReplicaContext.all_reduce(SUM, ...)`, whose gradient is again an
    all-reduce SUM of the upstream gradients.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)


def num_replicas_in_sync():
    """Replicas summing into one global batch here (1 outside tf.distribute)."""
    context = tf.distribute.get_replica_context()
    if context is None:
        return 1
    return context.num_replicas_in_sync


def global_statistics(h1, h2, labels=None):
    """Float64 CCA statistics of the global batch.

    Two passes, each one all-reduce under tf.distribute: first the counts and
    sums (giving the global means), then the cross products of the rows
    centred at the global means. Centring before multiplying keeps the
    covariance exact to float64 rounding even when the means are large.

    Args:
      h1: [m, o1] first view (any float dtype), this replica's rows.
      h2: [m, o2] second view.
      labels: optional [m, C] multi-hot (or non-negative weights) class
        labels for the cluster-CCA terms.

    Returns:
      CCAStatistics.
    """
    h1 = tf.cast(h1, tf.float64)
    h2 = tf.cast(h2, tf.float64)
    first = replica_sum({
        "count": tf.cast(tf.shape(h1)[0], tf.float64),
        "sum1": tf.reduce_sum(h1, axis=0),
        "sum2": tf.reduce_sum(h2, axis=0),
        "square1": tf.reduce_sum(tf.square(h1)),
        "square2": tf.reduce_sum(tf.square(h2)),
    })
    count = first["count"]
    safe_count = tf.maximum(count, 1.0)
    mean1 = first["sum1"] / safe_count
    mean2 = first["sum2"] / safe_count
    o1 = tf.cast(tf.shape(h1)[1], tf.float64)
    o2 = tf.cast(tf.shape(h2)[1], tf.float64)
    mean_square1 = first["square1"] / (safe_count * o1)
    mean_square2 = first["square2"] / (safe_count * o2)

    centred1 = h1 - mean1
    centred2 = h2 - mean2
    second = {
        "c11": tf.matmul(centred1, centred1, transpose_a=True),
        "c22": tf.matmul(centred2, centred2, transpose_a=True),
        "c12": tf.matmul(centred1, centred2, transpose_a=True),
    }
    if labels is not None:
        labels = tf.cast(labels, tf.float64)
        second["class_sum1"] = class_sums(labels, centred1)
        second["class_sum2"] = class_sums(labels, centred2)
        second["class_count"] = tf.reduce_sum(labels, axis=0)
    second = replica_sum(second)
    dof = tf.maximum(count - 1.0, 1.0)
    class_cross = class_pairs = None
    if labels is not None:
        class_cross = tf.matmul(second["class_sum1"], second["class_sum2"],
                                transpose_a=True)
        class_pairs = tf.reduce_sum(tf.square(second["class_count"]))
    return CCAStatistics(
        count=count, mean1=mean1, mean2=mean2,
        cov11=second["c11"] / dof, cov22=second["c22"] / dof,
        cov12=second["c12"] / dof,
        mean_square1=mean_square1, mean_square2=mean_square2,
        class_cross=class_cross, class_pairs=class_pairs)


def class_sums(labels, rows):
    """Lᵀ H: per-class sums of the rows, [C, d], for multi-hot labels [m, C].

    YT8M videos carry ~3 of 3,862 labels, so summing over the non-zero
    (video, class) entries costs O(nnz·d) instead of the dense O(m·C·d).
    """
    entries = tf.where(tf.not_equal(labels, 0.0))
    weights = tf.gather_nd(labels, entries)
    weighted = weights[:, tf.newaxis] * tf.gather(rows, entries[:, 0])
    return tf.math.unsorted_segment_sum(weighted, entries[:, 1],
                                        num_segments=tf.shape(labels)[1])


def _symmetrize(matrix):
    return 0.5 * (matrix + tf.linalg.matrix_transpose(matrix))


def inverse_sqrt_psd(matrix, floor):
    """max(Σ, floor)^{-1/2} of a symmetric PSD matrix, with a safe gradient.

    Forward: `tf.linalg.eigh`, eigenvalues clamped below at `floor`.

    Backward: the Daleckii-Krein formula for a matrix function
    F(S) = Q f(Λ) Qᵀ,  dS = Q (K ∘ (Qᵀ dF_sym Q)) Qᵀ, where K holds the
    divided differences (f(λi) - f(λj)) / (λi - λj). For f(x) = x^{-1/2} they
    have the closed form -1 / (si sj (si + sj)) with s = sqrt(λ), which equals
    f'(λ) on the diagonal and when eigenvalues repeat. The stock eigh gradient
    divides by λi - λj instead and blows up on repeated eigenvalues (whitened
    inputs, duplicated columns). Clamped eigenvalues get the divided
    differences of the clamped function (zero slope below the floor).

    Args:
      matrix: [..., n, n] symmetric positive semi-definite, float64.
      floor: python float > 0, the smallest eigenvalue used.

    Returns:
      [..., n, n] symmetric inverse square root.
    """

    @tf.custom_gradient
    def _inverse_sqrt(sym):
        # eigh raises (rather than returning NaN) on inf/NaN input, which
        # would turn a diverged training step into a crash; such input gets
        # a NaN result instead, so the trainer can withhold the step.
        finite = tf.reduce_all(tf.math.is_finite(sym))
        identity = tf.eye(tf.shape(sym)[-1], dtype=sym.dtype)
        eigenvalues, eigenvectors = tf.linalg.eigh(
            tf.where(finite, sym, tf.zeros_like(sym) + identity))
        clamped = tf.maximum(eigenvalues, floor)
        root = tf.sqrt(clamped)
        result = tf.matmul(eigenvectors / root[..., tf.newaxis, :],
                           eigenvectors, transpose_b=True)
        result = tf.where(finite, result,
                          tf.fill(tf.shape(result),
                                  tf.constant(float("nan"), sym.dtype)))

        def grad(upstream):
            inner = tf.matmul(
                eigenvectors,
                tf.matmul(_symmetrize(upstream), eigenvectors),
                transpose_a=True)
            root_i = root[..., :, tf.newaxis]
            root_j = root[..., tf.newaxis, :]
            kernel = -1.0 / (root_i * root_j * (root_i + root_j))
            # Slope of the clamp between λi and λj: 1 when both are above
            # the floor, 0 when both are below, in between otherwise.
            raw_diff = eigenvalues[..., :, tf.newaxis] - eigenvalues[..., tf.newaxis, :]
            clamped_diff = clamped[..., :, tf.newaxis] - clamped[..., tf.newaxis, :]
            above = eigenvalues > floor
            both_above = tf.logical_and(above[..., :, tf.newaxis],
                                        above[..., tf.newaxis, :])
            distinct = tf.not_equal(raw_diff, 0.0)
            slope = tf.where(
                distinct,
                clamped_diff / tf.where(distinct, raw_diff, 1.0),
                tf.cast(both_above, raw_diff.dtype))
            slope = tf.clip_by_value(slope, 0.0, 1.0)
            return tf.matmul(eigenvectors,
                             tf.matmul(kernel * slope * inner, eigenvectors,
                                       transpose_b=True))

        return result, grad

    return _inverse_sqrt(_symmetrize(matrix))


def view_scale(cov, mean_square):
    """Mean variance t = trace(Σ̂)/o of a view, and whether the view varies.

    A view whose mean variance is at most max(RELATIVE_VARIANCE_FLOOR ·
    mean_square, ABSOLUTE_VARIANCE_FLOOR) is constant up to rounding. Its
    correlation with anything is undefined (0/0), and the true gradient is
    unbounded (any perturbation is perfectly correlated with something), so
    the losses treat it as constant: correlation 0 and no gradient through
    it. `varying` is that test as a 0/1 float (a constant for autodiff).

    Returns:
      (scale, varying): the floored mean variance, and 1.0 or 0.0.
    """
    dim = tf.cast(tf.shape(cov)[-1], cov.dtype)
    mean_variance = tf.linalg.trace(cov) / dim
    floor = tf.maximum(RELATIVE_VARIANCE_FLOOR * mean_square,
                       ABSOLUTE_VARIANCE_FLOOR)
    varying = tf.cast(mean_variance > floor, cov.dtype)
    return tf.maximum(mean_variance, floor), tf.stop_gradient(varying)


def whitening(cov11, cov22, cov12, mean_square1, mean_square2, r1, r2, eps):
    """The whitening matrices and T for the relative-ridge CCA problem.

    Args:
      cov11 [o1,o1], cov22 [o2,o2], cov12 [o1,o2]: float64 covariances
        without ridge.
      mean_square1, mean_square2: raw mean squares of the views (see
        `CCAStatistics`), for the constant-view floor.
      r1, r2: ridge relative to the mean variance of each view.
      eps: eigenvalue floor of the scale-normalized covariances.

    Returns:
      (w1, w2, t): w1 = Σ11^{-1/2} [o1,o1], w2 = Σ22^{-1/2} [o2,o2] in the
      units of the inputs, and T = w1 Σ12 w2 [o1,o2].
    """
    scale1, varying1 = view_scale(cov11, mean_square1)
    scale2, varying2 = view_scale(cov22, mean_square2)
    o1 = tf.shape(cov11)[-1]
    o2 = tf.shape(cov22)[-1]
    # A constant view is replaced by exact zeros (T = 0, zero gradient).
    normalized11 = (varying1 * cov11 / scale1
                    + r1 * tf.eye(o1, dtype=cov11.dtype))
    normalized22 = (varying2 * cov22 / scale2
                    + r2 * tf.eye(o2, dtype=cov22.dtype))
    normalized12 = (varying1 * varying2) * cov12 * (
        tf.math.rsqrt(scale1) * tf.math.rsqrt(scale2))
    white1 = inverse_sqrt_psd(normalized11, eps)
    white2 = inverse_sqrt_psd(normalized22, eps)
    t = tf.matmul(white1, tf.matmul(normalized12, white2))
    return white1 * tf.math.rsqrt(scale1), white2 * tf.math.rsqrt(scale2), t


def canonical_correlations(t):
    """Singular values of T, largest first (`tf.linalg.svd`, no U/V).

    The gradient of `svd(compute_uv=False)` is U diag(ds) Vᵀ (TensorFlow
    recomputes U and V): no 1/(σi² - σj²) terms, so it is finite for repeated
    and zero singular values; for the full trace norm it is the (sub)gradient
    U Vᵀ of the nuclear norm.
    """
    return tf.linalg.svd(t, compute_uv=False)
