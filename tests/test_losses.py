"""Deep CCA family and contrastive losses against independent float64 references."""

import json

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from yt8m_xmodal import config as config_lib
from yt8m_xmodal import linalg, losses
from yt8m_xmodal.errors import ConfigError

RIDGE = losses.DEFAULT_RIDGE


# ----------------------------------------------------------------- references

def _centre(h):
    return h - h.mean(axis=0)


def scipy_correlations(x, y, r1=RIDGE, r2=RIDGE, cross=None):
    """Canonical correlations: scipy eigh for Σ^{-1/2}, scipy svd of T."""
    x, y = _centre(x), _centre(y)
    m = len(x)
    s11 = x.T @ x / (m - 1)
    s22 = y.T @ y / (m - 1)
    s12 = x.T @ y / (m - 1) if cross is None else cross
    s11 = s11 + r1 * np.trace(s11) / len(s11) * np.eye(len(s11))
    s22 = s22 + r2 * np.trace(s22) / len(s22) * np.eye(len(s22))

    def inverse_sqrt(s):
        w, q = scipy.linalg.eigh(s)
        return q @ np.diag(w ** -0.5) @ q.T

    t = inverse_sqrt(s11) @ s12 @ inverse_sqrt(s22)
    return scipy.linalg.svd(t, compute_uv=False)


def qr_correlations(x, y):
    """Ridge-free reference: singular values of Q1ᵀ Q2 (Björck & Golub 1973)."""
    q1, _ = np.linalg.qr(_centre(x))
    q2, _ = np.linalg.qr(_centre(y))
    return np.linalg.svd(q1.T @ q2, compute_uv=False)


def correlated_views(rng, m, o1, o2, noise=(0.3, 0.6, 1.0, 2.0, 4.0)):
    """Two views sharing latents with increasing noise (distinct correlations)."""
    k = min(o1, o2)
    latent = rng.normal(size=(m, k))
    scales = np.resize(np.asarray(noise), k)
    x = np.concatenate([latent + scales * rng.normal(size=(m, k)),
                        rng.normal(size=(m, o1 - k))], axis=1)
    y = np.concatenate([latent + rng.normal(size=(m, k)),
                        rng.normal(size=(m, o2 - k))], axis=1)
    # Mix the features so no covariance is diagonal.
    return x @ rng.normal(size=(o1, o1)), y @ rng.normal(size=(o2, o2)) + 5.0


def dcca(x, y, **kwargs):
    """DeepCCALoss at the references' ridge unless the test sets one."""
    kwargs = {"r1": RIDGE, "r2": RIDGE, **kwargs}
    return losses.DeepCCALoss(**kwargs).compute(tf.constant(x), tf.constant(y))


# --------------------------------------------------------- DCCA vs references

SHAPES = [(100, 5, 5, None), (200, 7, 3, None), (150, 4, 6, 2),
          (300, 8, 8, 3), (64, 1, 4, None)]


@pytest.mark.parametrize("m,o1,o2,top_k", SHAPES)
def test_total_correlation_matches_scipy(m, o1, o2, top_k):
    rng = np.random.default_rng(m + o1 + o2)
    x, y = correlated_views(rng, m, o1, o2)
    reference = scipy_correlations(x, y)
    k = top_k or min(o1, o2)
    expected = reference[:k].sum()

    out = dcca(x, y, top_k=top_k)
    assert out["loss"].dtype == tf.float64
    assert abs(out["total_correlation"].numpy() - expected) <= 1e-8 * expected
    assert abs(out["loss"].numpy() + expected) <= 1e-8 * expected
    np.testing.assert_allclose(out["correlations"].numpy(), reference[:k],
                               rtol=1e-8)

    out32 = dcca(x.astype(np.float32), y.astype(np.float32), top_k=top_k)
    assert out32["loss"].dtype == tf.float32
    assert abs(out32["total_correlation"].numpy() - expected) <= 1e-4 * expected


def test_ridge_free_limit_matches_qr_reference():
    rng = np.random.default_rng(7)
    x, y = correlated_views(rng, 120, 6, 4)
    reference = qr_correlations(x, y)
    out = dcca(x, y, r1=0.0, r2=0.0, eps=1e-12)
    np.testing.assert_allclose(out["correlations"].numpy(), reference,
                               rtol=1e-8)
    # The ridge path converges to it as r -> 0.
    previous = np.inf
    for ridge in (1e-2, 1e-4, 1e-6, 1e-8):
        gap = abs(dcca(x, y, r1=ridge, r2=ridge)["total_correlation"].numpy()
                  - reference.sum())
        assert gap < previous
        previous = gap
    assert previous < 1e-6


def test_identical_views_give_the_dimension():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(80, 5)) @ rng.normal(size=(5, 5))
    assert abs(dcca(x, x, r1=0.0, r2=0.0)["total_correlation"].numpy()
               - 5.0) < 1e-8
    # Identical up to an invertible map is still identical information.
    y = x @ rng.normal(size=(5, 5)) - 3.0
    assert abs(dcca(x, y, r1=0.0, r2=0.0)["total_correlation"].numpy()
               - 5.0) < 1e-8
    # With the relative ridge each correlation is λ / (λ + r·t), t the mean
    # eigenvalue λ of the covariance.
    eigenvalues = np.linalg.eigvalsh(np.cov(x, rowvar=False))
    expected = np.sum(eigenvalues / (eigenvalues + RIDGE * eigenvalues.mean()))
    assert abs(dcca(x, x)["total_correlation"].numpy() - expected) < 1e-8


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_one_dimensional_views_give_absolute_pearson_r(sign):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(50, 1))
    y = sign * 0.4 * x + rng.normal(size=(50, 1)) + 2.0
    pearson = np.corrcoef(x[:, 0], y[:, 0])[0, 1]
    assert np.sign(pearson) == sign
    value = dcca(x, y, r1=0.0, r2=0.0)["total_correlation"].numpy()
    assert abs(value - abs(pearson)) < 1e-10


def test_invariant_under_invertible_linear_maps():
    rng = np.random.default_rng(10)
    x, y = correlated_views(rng, 150, 5, 4)
    base = dcca(x, y, r1=0.0, r2=0.0)["correlations"].numpy()
    mapped_x = x @ rng.normal(size=(5, 5)) + rng.normal(size=5)
    mapped_y = y @ rng.normal(size=(4, 4)) - 7.0
    mapped = dcca(mapped_x, mapped_y, r1=0.0, r2=0.0)["correlations"].numpy()
    np.testing.assert_allclose(mapped, base, rtol=1e-8)
    # The relative ridge keeps the regularized loss scale-free.
    ridged = dcca(x, y)["total_correlation"].numpy()
    scaled = dcca(1e-6 * x, 1e6 * y)["total_correlation"].numpy()
    assert abs(ridged - scaled) < 1e-10 * ridged


def test_top_k_sums_the_largest_correlations():
    rng = np.random.default_rng(11)
    x, y = correlated_views(rng, 400, 5, 5, noise=(4.0, 0.2, 2.0, 0.5, 1.0))
    everything = dcca(x, y)["correlations"].numpy()
    assert np.all(np.diff(everything) <= 0), "correlations must be sorted"
    reference = np.sort(scipy_correlations(x, y))[::-1]
    for k in (1, 2, 4):
        top = dcca(x, y, top_k=k)["total_correlation"].numpy()
        assert abs(top - reference[:k].sum()) < 1e-8
        assert top > reference[-k:].sum() + 0.1


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(12)
    x, y = correlated_views(rng, 14, 3, 2)
    for kwargs in ({}, {"top_k": 1}, {"r1": 0.0, "r2": 0.0}):
        loss = losses.DeepCCALoss(**kwargs)
        theoretical, numerical = tf.test.compute_gradient(
            lambda a, b, loss=loss: loss(a, b),
            [tf.constant(x), tf.constant(y)], delta=1e-6)
        for t, n in zip(theoretical, numerical):
            np.testing.assert_allclose(t, n, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,kwargs", [
    ("cluster_cca", {"beta": 0.3}), ("soft_cca", {}),
    ("infonce", {"learn_temperature": False})])
def test_other_losses_gradients_match_finite_differences(name, kwargs):
    rng = np.random.default_rng(25)
    x, y = correlated_views(rng, 14, 3, 3)
    labels = tf.constant(_labels(rng, 14, 4))
    loss = losses.get_loss(name, **kwargs)
    theoretical, numerical = tf.test.compute_gradient(
        lambda a, b: loss(a, b, labels),
        [tf.constant(x), tf.constant(y)], delta=1e-6)
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-5, atol=1e-7)


def test_gradient_with_repeated_eigenvalues_matches_finite_differences():
    """Whitened views: Σ11 = Σ22 = I, where the stock eigh gradient divides
    by zero eigenvalue gaps."""
    rng = np.random.default_rng(13)
    x = _centre(rng.normal(size=(20, 3)))
    w, q = np.linalg.eigh(x.T @ x / 19)
    x = x @ q @ np.diag(w ** -0.5) @ q.T
    y = x[:, :2] + 0.5 * _centre(rng.normal(size=(20, 2)))
    theoretical, numerical = tf.test.compute_gradient(
        lambda a, b: losses.DeepCCALoss()(a, b),
        [tf.constant(x), tf.constant(y)], delta=1e-6)
    for t, n in zip(theoretical, numerical):
        assert np.all(np.isfinite(t))
        np.testing.assert_allclose(t, n, rtol=1e-5, atol=1e-7)


def test_inverse_sqrt_gradient_matches_finite_differences():
    rng = np.random.default_rng(14)
    a = rng.normal(size=(4, 4))
    spd = a @ a.T + 0.5 * np.eye(4)
    theoretical, numerical = tf.test.compute_gradient(
        lambda s: tf.reduce_sum(tf.sin(linalg.inverse_sqrt_psd(s, 1e-9))),
        [tf.constant(spd)], delta=1e-6)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5,
                               atol=1e-7)


# ------------------------------------------------------------ degenerate input

def _degenerate_batch(rng, kind, m=16, o1=4, o2=3):
    x = rng.normal(size=(m, o1))
    y = x[:, :o2] @ rng.normal(size=(o2, o2)) + rng.normal(size=(m, o2))
    if kind == "duplicated_columns":
        x[:, 1] = x[:, 0]
        y[:, 2] = y[:, 0]
    elif kind == "whitened":
        x = _centre(x)
        w, q = np.linalg.eigh(x.T @ x)
        x = x @ q @ np.diag(w ** -0.5) @ q.T * np.sqrt(m - 1)
        y = x[:, :o2] if rng.random() < 0.5 else x[:, 1:]
    elif kind == "constant_columns":
        x[:, 0] = 3.0
        if rng.random() < 0.5:
            y[:] = -1.5
    elif kind == "identical_rows":
        x[:] = x[0]
        y[:] = y[0]
    elif kind == "zeros":
        x[:] = 0.0
        y[:] = 0.0 if rng.random() < 0.5 else y
    elif kind == "identical_views":
        y = x[:, :o2].copy()
    if rng.random() < 0.5:
        scale = 10.0 ** rng.choice([-6, 6])
        x, y = scale * x, (scale if rng.random() < 0.5 else 1.0) * y
    return x, y


DEGENERATE_KINDS = ["duplicated_columns", "whitened", "constant_columns",
                    "identical_rows", "zeros", "identical_views", "scaled"]


def test_no_nan_or_inf_on_degenerate_batches():
    rng = np.random.default_rng(15)
    objectives = [losses.DeepCCALoss(),
                  losses.DeepCCALoss(r1=0.0, r2=0.0, top_k=2),
                  losses.ClusterCCALoss(beta=0.3),
                  losses.SoftCCALoss(),
                  losses.InfoNCELoss(),
                  losses.TripletLoss()]

    def values_and_grads(x, y, labels):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([x, y])
            outs = [objective.compute(x[:, :3], y, labels)
                    if isinstance(objective, (losses.SoftCCALoss,
                                              losses._ContrastiveLoss))
                    else objective.compute(x, y, labels)
                    for objective in objectives]
            values = [out["loss"] for out in outs]
        grads = []
        for value in values:
            grads.extend(tape.gradient(value, [x, y]))
        monitors = [out["total_correlation"] for out in outs]
        return values + monitors, grads

    steps = {dtype: tf.function(values_and_grads) for dtype in ("f32", "f64")}
    labels = tf.constant(np.eye(3)[np.arange(16) % 3])
    for i in range(300):
        kind = DEGENERATE_KINDS[i % len(DEGENERATE_KINDS)]
        x, y = _degenerate_batch(rng, kind)
        dtype = np.float32 if i % 2 else np.float64
        values, grads = steps["f32" if i % 2 else "f64"](
            tf.constant(x.astype(dtype)), tf.constant(y.astype(dtype)),
            tf.constant(labels.numpy().astype(dtype)))
        for tensor in values + grads:
            assert np.all(np.isfinite(tensor.numpy())), (i, kind, tensor)


def test_static_batch_too_small_is_a_flag_error_and_dynamic_is_finite():
    assert config_lib.min_cca_batch_size(3, 4) == 8
    rng = np.random.default_rng(16)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 4))
    with pytest.raises(ConfigError, match=r"o1=3 and o2=4.*batch_size=\d+ >= 8"):
        dcca(x, y)

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float64),
                                  tf.TensorSpec([None, 4], tf.float64)])
    def dynamic(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            value = losses.DeepCCALoss(r1=0.0, r2=0.0)(a, b)
        return value, tape.gradient(value, [a, b])

    value, grads = dynamic(tf.constant(x), tf.constant(y))
    assert np.isfinite(value.numpy())
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    # Rank-deficient without ridge: the correlations are (clamped) ~1, a
    # documented artefact rather than garbage.
    assert -3.0 - 1e-6 <= value.numpy() <= 0.0


def test_runs_under_xla():
    rng = np.random.default_rng(17)
    x, y = correlated_views(rng, 64, 6, 4)
    loss = losses.DeepCCALoss(top_k=3)

    def value_and_grad(a, b):
        with tf.GradientTape() as tape:
            tape.watch(a)
            value = loss(a, b)
        return value, tape.gradient(value, a)

    eager = value_and_grad(tf.constant(x), tf.constant(y))
    compiled = tf.function(value_and_grad, jit_compile=True)(
        tf.constant(x), tf.constant(y))
    # XLA's Jacobi eigh/svd stop at a looser tolerance than LAPACK.
    np.testing.assert_allclose(compiled[0].numpy(), eager[0].numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(compiled[1].numpy(), eager[1].numpy(),
                               rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------- cluster CCA

def _labels(rng, m, classes):
    labels = (rng.random((m, classes)) < 0.25).astype(np.float64)
    labels[0] = 0.0  # an unlabelled video
    labels[1] = 1.0  # a video carrying every label
    return labels


def test_cluster_cca_with_beta_one_equals_dcca():
    rng = np.random.default_rng(18)
    x, y = correlated_views(rng, 90, 5, 4)
    labels = _labels(rng, 90, 6)
    cluster = losses.ClusterCCALoss(beta=1.0, top_k=3, r1=RIDGE,
                                    r2=RIDGE).compute(x, y, labels)
    plain = dcca(x, y, top_k=3)
    np.testing.assert_allclose(cluster["correlations"].numpy(),
                               plain["correlations"].numpy(), rtol=1e-12)


def test_cluster_cca_class_means_equal_the_explicit_double_sum():
    rng = np.random.default_rng(19)
    m, classes = 40, 5
    x, y = correlated_views(rng, m, 4, 3)
    labels = _labels(rng, m, classes)
    xc, yc = _centre(x), _centre(y)
    pairs_sum = np.zeros((4, 3))
    pairs = 0.0
    for c in range(classes):
        for i in range(m):
            for j in range(m):
                if labels[i, c] and labels[j, c]:
                    pairs_sum += np.outer(xc[i], yc[j])
                    pairs += 1.0
    stats = linalg.global_statistics(x, y, labels)
    np.testing.assert_allclose(stats.class_cross.numpy(), pairs_sum,
                               rtol=1e-10, atol=1e-10)
    assert stats.class_pairs.numpy() == pairs

    beta = 0.4
    class_cov = pairs_sum * m / (pairs * (m - 1))
    blended = beta * xc.T @ yc / (m - 1) + (1 - beta) * class_cov
    expected = scipy_correlations(x, y, cross=blended)
    got = losses.ClusterCCALoss(beta=beta, num_classes=classes, r1=RIDGE,
                                  r2=RIDGE).compute(
        x, y, labels)
    np.testing.assert_allclose(got["correlations"].numpy(), expected,
                               rtol=1e-8)


def test_cluster_cca_with_singleton_classes_equals_dcca():
    rng = np.random.default_rng(20)
    x, y = correlated_views(rng, 30, 3, 3)
    one_class_each = np.eye(30)
    got = losses.ClusterCCALoss(beta=0.0, r1=RIDGE, r2=RIDGE).compute(x, y, one_class_each)
    np.testing.assert_allclose(got["total_correlation"].numpy(),
                               dcca(x, y)["total_correlation"].numpy(),
                               rtol=1e-10)


def test_cluster_cca_needs_labels():
    with pytest.raises(ValueError, match="labels"):
        losses.ClusterCCALoss()(np.zeros((10, 2)), np.zeros((10, 2)))


# ----------------------------------------------------- soft CCA, InfoNCE, triplet

def test_soft_cca_matches_numpy_reference():
    rng = np.random.default_rng(21)
    x, y = correlated_views(rng, 50, 4, 4)
    weight, bn_eps = 0.7, 1e-5
    got = losses.SoftCCALoss(decorrelation_weight=weight, bn_eps=bn_eps)(x, y)

    def standardize(h):
        var = h.var(axis=0, ddof=1)
        return _centre(h) / np.sqrt(var + bn_eps * var.mean()), var

    z1, var1 = standardize(x)
    z2, var2 = standardize(y)
    distance = np.mean(np.sum((z1 - z2) ** 2, axis=1))

    def sdl(h, var):
        cov = np.cov(h, rowvar=False)
        scale = np.sqrt(var + bn_eps * var.mean())
        corr = cov / np.outer(scale, scale)
        return (np.abs(corr).sum() - np.abs(np.diag(corr)).sum()) / len(corr)

    expected = distance + weight * (sdl(x, var1) + sdl(y, var2))
    assert abs(got.numpy() - expected) < 1e-10 * abs(expected)


def _unit(h):
    return h / np.linalg.norm(h, axis=1, keepdims=True)


def test_infonce_matches_numpy_reference_and_learns_temperature():
    rng = np.random.default_rng(22)
    x, y = correlated_views(rng, 12, 4, 4)
    logits = _unit(x) @ _unit(y).T / 0.1

    def cross_entropy(l):
        return np.mean(scipy.special.logsumexp(l, axis=1) - np.diag(l))

    expected = 0.5 * (cross_entropy(logits) + cross_entropy(logits.T))
    fixed = losses.InfoNCELoss(temperature=0.1, learn_temperature=False)
    assert abs(fixed(x, y).numpy() - expected) < 1e-5 * expected
    assert not fixed.trainable_variables

    learned = losses.InfoNCELoss(temperature=0.1)
    assert len(learned.trainable_variables) == 1
    with tf.GradientTape() as tape:
        value = learned(tf.constant(x), tf.constant(y))
    grad = tape.gradient(value, learned.trainable_variables)[0]
    assert np.isfinite(grad.numpy()) and grad.numpy() != 0.0
    # d loss / d log(1/τ) by central differences of the reference.
    scale = np.log(10.0)
    h = 1e-4

    def reference(log_scale):
        l = _unit(x) @ _unit(y).T * np.exp(log_scale)
        return 0.5 * (cross_entropy(l) + cross_entropy(l.T))

    numeric = (reference(scale + h) - reference(scale - h)) / (2 * h)
    assert abs(grad.numpy() - numeric) < 1e-3 * abs(numeric) + 1e-6


def test_triplet_matches_numpy_reference():
    rng = np.random.default_rng(23)
    x, y = correlated_views(rng, 10, 4, 4)
    s = _unit(x) @ _unit(y).T
    total = 0.0
    for i in range(10):
        v2a = max(s[i, j] for j in range(10) if j != i)
        a2v = max(s[j, i] for j in range(10) if j != i)
        total += max(0.0, 0.3 - s[i, i] + v2a) + max(0.0, 0.3 - s[i, i] + a2v)
    expected = 0.5 * total / 10
    got = losses.TripletLoss(margin=0.3)(x, y).numpy()
    assert abs(got - expected) < 1e-12


def test_contrastive_losses_monitor_batch_cca_without_gradient():
    rng = np.random.default_rng(24)
    x, y = correlated_views(rng, 60, 4, 4)
    reference = scipy_correlations(x, y)
    x = tf.constant(x)
    for name in ("infonce", "triplet", "soft_cca"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = losses.get_loss(name).compute(x, tf.constant(y))
        np.testing.assert_allclose(out["correlations"].numpy(), reference,
                                   rtol=1e-8)
        assert tape.gradient(out["total_correlation"], x) is None


# ------------------------------------------------------------- interface

def test_get_loss_names_and_config_round_trip():
    for name, cls in losses.LOSSES.items():
        loss = losses.get_loss(name)
        assert isinstance(loss, cls)
        config = loss.get_config()
        json.dumps(config)
        assert cls.from_config(config).get_config() == config
    assert losses.get_loss("dcca", top_k=5, r1=1e-3).get_config()["top_k"] == 5


def test_get_loss_rejects_unknown_names_and_options():
    with pytest.raises(ConfigError, match="loss=cca is not one of"):
        losses.get_loss("cca")
    with pytest.raises(ConfigError, match="loss=triplet: bad loss options"):
        losses.get_loss("triplet", temperature=0.1)
    with pytest.raises(ConfigError, match="loss=triplet takes no option "
                       "temperature"):
        losses.build_loss("triplet", {"temperature": 0.1})


def test_build_loss_maps_the_typed_config_onto_the_loss():
    dcca = losses.build_loss("dcca", config_lib.DeepCcaConfig(cca_top_k=5,
                                                             cca_ridge=0.5))
    assert (dcca.top_k, dcca.r1, dcca.r2) == (5, 0.5, 0.5)
    # The class defaults are the config defaults: one recipe.
    default = config_lib.DeepCcaConfig()
    assert losses.DeepCCALoss().r1 == default.cca_ridge
    assert losses.build_loss("dcca").top_k is None  # 0 means all
    cluster = losses.build_loss("cluster_cca", {"cluster_cca_beta": 0.2},
                                num_classes=7)
    assert (cluster.beta, cluster.num_classes) == (0.2, 7)
    infonce = losses.build_loss("infonce")
    assert infonce.get_config()["learn_temperature"] is True


def test_top_k_larger_than_the_views_is_an_error():
    with pytest.raises(ValueError, match="top_k=4"):
        losses.DeepCCALoss(top_k=4)(np.zeros((20, 3)), np.zeros((20, 5)))


@pytest.mark.parametrize("name", ["soft_cca", "infonce", "triplet"])
def test_shared_space_losses_need_equal_sizes(name):
    with pytest.raises(ValueError, match="video 3 and audio 5"):
        losses.get_loss(name)(np.ones((20, 3)), np.ones((20, 5)))
