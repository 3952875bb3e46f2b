"""LinearCCA: streamed float64 statistics, scipy reference, save/load."""

import keras
import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from yt8m_xmodal.subspace import LinearCCA

RIDGE = 1e-4


def _correlated(rng, m=400, d1=6, d2=5, offset=0.0):
    latent = rng.normal(size=(m, 3))
    video = (latent @ rng.normal(size=(3, d1)) + 0.5 * rng.normal(size=(m, d1))
             + offset)
    audio = (latent @ rng.normal(size=(3, d2)) + 0.7 * rng.normal(size=(m, d2))
             - offset)
    return video, audio


def _scipy_cca(video, audio, r1=RIDGE, r2=RIDGE):
    """Reference: scipy eigh for Σ^{-1/2}, scipy svd of T (float64)."""
    v = video - video.mean(0)
    a = audio - audio.mean(0)
    m = len(v)
    s11 = v.T @ v / (m - 1)
    s22 = a.T @ a / (m - 1)
    s12 = v.T @ a / (m - 1)
    s11 = s11 + r1 * np.trace(s11) / len(s11) * np.eye(len(s11))
    s22 = s22 + r2 * np.trace(s22) / len(s22) * np.eye(len(s22))

    def inverse_sqrt(s):
        w, q = scipy.linalg.eigh(s)
        return q @ np.diag(w ** -0.5) @ q.T

    w1, w2 = inverse_sqrt(s11), inverse_sqrt(s22)
    u, s, vt = scipy.linalg.svd(w1 @ s12 @ w2)
    return s, w1 @ u, w2 @ vt.T


def test_fitted_correlations_and_projections_match_scipy():
    rng = np.random.default_rng(0)
    video, audio = _correlated(rng, offset=3.0)
    cca = LinearCCA(subspace_dim=3)
    cca.update_state(video, audio)
    fitted = cca.fit().numpy()
    reference, ref_a, ref_b = _scipy_cca(video, audio)
    np.testing.assert_allclose(fitted, reference[:3], rtol=1e-8)
    np.testing.assert_allclose(cca.video_mean.numpy(), video.mean(0), rtol=1e-10)
    # Singular vectors are defined up to sign: compare |columns|.
    np.testing.assert_allclose(np.abs(cca.video_projection.numpy()),
                               np.abs(ref_a[:, :3]), rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(np.abs(cca.audio_projection.numpy()),
                               np.abs(ref_b[:, :3]), rtol=1e-6, atol=1e-10)
    # The projected views are correlated exactly as fitted, per component.
    out = cca({"video": tf.constant(video), "audio": tf.constant(audio)})
    pv, pa = out["video"].numpy(), out["audio"].numpy()
    for i in range(3):
        r = np.corrcoef(pv[:, i], pa[:, i])[0, 1]
        assert abs(abs(r) - fitted[i]) < 1e-3


def test_streamed_fit_over_ten_batches_equals_one_shot():
    rng = np.random.default_rng(1)
    video, audio = _correlated(rng, m=503, offset=100.0)
    one_shot = LinearCCA(subspace_dim=4)
    one_shot.update_state(video, audio)
    streamed = LinearCCA(subspace_dim=4)
    update = tf.function(streamed.update_state)
    # Uneven batch sizes, one of them empty.
    bounds = [0, 7, 60, 60, 133, 200, 260, 321, 400, 470, 503]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        update(tf.constant(video[start:stop]), tf.constant(audio[start:stop]))
    assert streamed.count.numpy() == 503
    np.testing.assert_allclose(streamed.joint_mean.numpy(),
                               one_shot.joint_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(streamed.joint_scatter.numpy(),
                               one_shot.joint_scatter.numpy(), rtol=1e-10,
                               atol=1e-9)
    np.testing.assert_allclose(streamed.fit().numpy(), one_shot.fit().numpy(),
                               rtol=1e-9)
    np.testing.assert_allclose(streamed.video_projection.numpy(),
                               one_shot.video_projection.numpy(),
                               rtol=1e-6, atol=1e-9)


def test_keras_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    video, audio = _correlated(rng)
    cca = LinearCCA(subspace_dim=2, r1=1e-3, name="subspace")
    cca.update_state(video, audio)
    cca.fit()
    inputs = {"video": keras.Input((6,), name="video"),
              "audio": keras.Input((5,), name="audio")}
    model = keras.Model(inputs, cca(inputs))
    path = tmp_path / "cca.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    batch = {"video": video[:9].astype("float32"),
             "audio": audio[:9].astype("float32")}
    before = model(batch)
    after = restored(batch)
    for view in ("video", "audio"):
        np.testing.assert_array_equal(before[view].numpy(), after[view].numpy())
    layer = restored.get_layer("subspace")
    assert isinstance(layer, LinearCCA)
    assert layer.get_config()["r1"] == 1e-3
    np.testing.assert_array_equal(layer.correlations.numpy(),
                                  cca.correlations.numpy())


def test_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    video, audio = _correlated(rng)
    cca = LinearCCA(subspace_dim=2)
    cca.update_state(video, audio)
    cca.fit()
    path = tf.train.Checkpoint(subspace=cca).write(str(tmp_path / "ckpt"))
    fresh = LinearCCA(subspace_dim=2)
    fresh.build({"video": (None, 6), "audio": (None, 5)})
    tf.train.Checkpoint(subspace=fresh).read(path).assert_consumed()
    np.testing.assert_array_equal(fresh.project_audio(audio).numpy(),
                                  cca.project_audio(audio).numpy())
    # The streamed statistics travel too, so fitting can resume.
    np.testing.assert_array_equal(fresh.joint_scatter.numpy(),
                                  cca.joint_scatter.numpy())


def test_raw_mean_features_baseline_in_float32():
    """The classic baseline: linear CCA straight on float32 mean features."""
    rng = np.random.default_rng(4)
    video, audio = _correlated(rng, m=300, d1=16, d2=8)
    cca = LinearCCA(subspace_dim=8)
    cca.update_state(video.astype("float32"), audio.astype("float32"))
    fitted = cca.fit().numpy()
    reference = _scipy_cca(video.astype("float32").astype("float64"),
                           audio.astype("float32").astype("float64"))[0]
    np.testing.assert_allclose(fitted, reference[:8], rtol=1e-8)
    assert cca.project_video(video.astype("float32")).dtype == tf.float32


def test_subspace_dim_larger_than_views_is_an_error():
    cca = LinearCCA(subspace_dim=6)
    with pytest.raises(ValueError, match="subspace_dim=6"):
        cca.update_state(np.zeros((4, 6)), np.zeros((4, 5)))


def test_bare_layer_keras_round_trip(tmp_path):
    """export.py saves the fitted layer on its own as subspace.keras."""
    rng = np.random.default_rng(5)
    video, audio = _correlated(rng)
    cca = LinearCCA(subspace_dim=3)
    cca.build({"video": (None, 6), "audio": (None, 5)})
    cca.update_state(video, audio)
    cca.fit()
    keras.saving.save_model(cca, tmp_path / "subspace.keras")
    restored = keras.saving.load_model(tmp_path / "subspace.keras")
    assert isinstance(restored, LinearCCA)
    np.testing.assert_array_equal(restored.project_video(video).numpy(),
                                  cca.project_video(video).numpy())
    np.testing.assert_array_equal(restored.correlations.numpy(),
                                  cca.correlations.numpy())
