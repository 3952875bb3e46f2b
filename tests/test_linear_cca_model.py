"""LinearCcaModel: the linear-CCA baseline reachable from train.py."""

import os
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
import prewarmed
from test_training import tiny_config
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import evaluation
from yt8m_xmodal import modeling
from yt8m_xmodal import readers
from yt8m_xmodal import training


def _reference_correlations(video, audio, ridge):
    """float64 numpy linear CCA with the package's relative ridge."""
    x, y = video - video.mean(0), audio - audio.mean(0)
    n = len(x) - 1
    cxx, cyy, cxy = x.T @ x / n, y.T @ y / n, x.T @ y / n
    sx, sy = np.trace(cxx) / len(cxx), np.trace(cyy) / len(cyy)

    def inv_sqrt(c):
        values, vectors = np.linalg.eigh(c)
        return vectors @ np.diag(values ** -0.5) @ vectors.T

    t = (inv_sqrt(cxx / sx + ridge * np.eye(len(cxx))) @ (cxy / np.sqrt(sx * sy))
         @ inv_sqrt(cyy / sy + ridge * np.eye(len(cyy))))
    return np.linalg.svd(t, compute_uv=False)


def _mean_features(cfg):
    """L2-normalized (frame level: per frame, then masked mean) features."""
    reader = readers.reader_for(cfg.data)
    video, audio = [], []
    for batch in reader.batches(cfg.train_data_pattern, 64):
        for key, out in (("video", video), ("audio", audio)):
            x = batch[key].numpy().astype(np.float64)
            x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
            if cfg.data.frame_features:
                mask = batch["mask"].numpy()[..., None]
                x = (x * mask).sum(1) / mask.sum(1)
            out.append(x)
    return np.concatenate(video), np.concatenate(audio)


@pytest.mark.parametrize("frame_features", [True, False])
def test_linear_cca_model_is_linear_cca_on_the_mean_features(
        tiny_frame_data, tiny_video_data, tmp_path, frame_features):
    data_dir = tiny_frame_data if frame_features else tiny_video_data
    cfg = tiny_config(data_dir, tmp_path / "run", model="LinearCcaModel",
                      frame_features=frame_features, subspace_dim=4,
                      model_config={"linear_cca_ridge": 0.1}, max_steps=0,
                      weighted_labels=())
    result = training.train(cfg)
    assert result.step == 0 and "nothing to train" in result.stop_reason
    _, model, subspace, _ = modeling.restore(cfg.train_dir)
    video, audio = _mean_features(cfg)
    expected = _reference_correlations(video, audio, 0.1)[:4]
    np.testing.assert_allclose(subspace.correlations.numpy(), expected,
                               atol=1e-5)
    # Exported like any model; eval.py scores the same embeddings.
    assert os.path.isdir(os.path.join(result.export_dir, "saved_model"))
    evaluated = evaluation.evaluate_checkpoint(
        cfg.train_dir, cfg.validate_data_pattern, cfg.top_k)
    assert evaluated["audio_to_video"]["recall@10"] == pytest.approx(
        result.validation["audio_to_video"]["recall@10"])


def test_linear_cca_config_checks_the_subspace_against_the_feature_sizes():
    data = config_lib.DataConfig(frame_features=False, feature_sizes=(16, 8))
    config_lib.TrainConfig(data=data, model="LinearCcaModel", subspace_dim=8)
    with pytest.raises(config_lib.ConfigError, match="subspace_dim"):
        config_lib.TrainConfig(data=data, model="LinearCcaModel",
                               subspace_dim=9)
    with pytest.raises(config_lib.ConfigError, match="linear_cca_ridge"):
        config_lib.LinearCcaConfig(linear_cca_ridge=-1)


def test_train_py_model_linear_cca(tiny_video_data, tmp_path):
    train_dir = tmp_path / "run"
    out = prewarmed.run(
        [sys.executable, str(REPO_ROOT / "train.py"), "--noframe_features",
         "--model=LinearCcaModel", "--feature_sizes=16,8", "--num_classes=4",
         "--subspace_dim=4",
         f"--train_data_pattern={tiny_video_data}/train-*",
         f"--validate_data_pattern={tiny_video_data}/validate-*",
         f"--train_dir={train_dir}", "--batch_size=32"],
        cwd=REPO_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LinearCcaModel" in out.stdout
    assert modeling.latest_export(str(train_dir)) is not None


@pytest.mark.parametrize("frame_level", [True, False])
def test_linear_cca_model_round_trips_and_checkpoints(tmp_path, frame_level):
    import keras
    import tensorflow as tf
    from yt8m_xmodal import models
    model = models.LinearCcaModel(16, 8, frame_level=frame_level,
                                  input_norm="l2")
    rng = np.random.default_rng(0)
    shape = (3, 5) if frame_level else (3,)
    batch = {"video": rng.normal(size=shape + (16,)).astype(np.float32),
             "audio": rng.normal(size=shape + (8,)).astype(np.float32)}
    out = model(batch)
    # Identity towers: the L2-normalized features (their mean over frames).
    norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    expected = norm(batch["audio"])
    if frame_level:
        expected = expected.mean(1)
    np.testing.assert_allclose(out["audio"].numpy(), expected, atol=1e-6)
    assert not model.trainable_variables
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded(batch)["video"], out["video"])
