"""Early stopping, the step budget without validation, label weighting and
the linear-CCA input projection of the training loop (small synthetic data)."""

import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from test_training import tiny_config
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import evaluation
from yt8m_xmodal import modeling
from yt8m_xmodal import readers
from yt8m_xmodal import rundir
from yt8m_xmodal import training

VIDEO_MODEL = {"embedding_dim": 4, "hidden_units": 16}


def video_config(data_dir, train_dir, **overrides):
    schedule = dict(model="VideoLevelMlpModel", frame_features=False,
                    model_config=VIDEO_MODEL, max_steps=0, num_epochs=0,
                    export_model_steps=10_000, weighted_labels=())
    return tiny_config(data_dir, train_dir, **{**schedule, **overrides})


def test_stops_when_validation_stops_improving_and_keeps_the_best(
        tiny_video_data, tmp_path):
    # A large learning rate overfits 128 videos quickly, so the validation
    # score peaks and patience runs out well before the cap.
    cfg = video_config(tiny_video_data, tmp_path / "run",
                       early_stopping_patience=2, early_stopping_fraction=0.5,
                       validate_every_steps=1, base_learning_rate=3e-2,
                       num_epochs=60)
    trainer = training.Trainer(cfg)
    result = trainer.run()
    steps = [s for s, _ in result.validations]
    scores = [v for _, v in result.validations]
    # Validated before training, then after every epoch (4 steps each).
    assert steps[:3] == [0, 4, 8]
    best = int(np.argmax(scores))
    assert result.best_step == steps[best]
    assert "early_stopping_patience" in result.stop_reason
    assert "early_stopping_fraction" in result.stop_reason
    # Stopped at the first validation after the best one that is both
    # `patience` validations and half the best step's count past it.
    waited = [(i - best, steps[i] - steps[best])
              for i in range(best + 1, len(steps))]
    assert waited[-1][0] >= cfg.early_stopping_patience
    assert waited[-1][1] >= cfg.early_stopping_fraction * steps[best]
    assert not any(n >= 2 and s >= 0.5 * steps[best] for n, s in waited[:-1])
    assert result.step == steps[-1] < 60 * 4
    # The final checkpoint holds the best model, and so does the export.
    _, model, subspace, step = modeling.restore(cfg.train_dir)
    assert step == result.step
    best_ckpt = tf.train.latest_checkpoint(
        os.path.join(cfg.train_dir, training.BEST_DIR))
    assert best_ckpt.endswith(f"ckpt-{result.best_step}")
    _, best_model, best_subspace, _ = modeling.restore(cfg.train_dir,
                                                       best_ckpt)
    for a, b in zip(model.weights + subspace.weights,
                    best_model.weights + best_subspace.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert result.export_dir.endswith(f"step_{result.best_step:08d}")
    assert modeling.latest_export(cfg.train_dir) == result.export_dir
    # The reported validation is the best one, and eval.py agrees.
    assert training.selection_score(result.validation) == pytest.approx(
        max(scores), abs=1e-6)
    evaluated = evaluation.evaluate_checkpoint(
        cfg.train_dir, cfg.validate_data_pattern, cfg.top_k)
    assert training.selection_score(evaluated) == pytest.approx(
        max(scores), abs=1e-6)
    recorded = json.loads(open(os.path.join(
        cfg.train_dir, rundir.TRAIN_RESULT_FILE)).read())
    assert recorded["best_step"] == result.best_step
    assert recorded["stop_reason"] == result.stop_reason
    # Rerunning a stopped run trains no further.
    again = training.Trainer(cfg).run()
    assert again.step == result.step and again.best_step == result.best_step


def test_patience_waits_for_both_validations_and_a_fraction_of_the_run():
    cfg = config_lib.TrainConfig(early_stopping_patience=2,
                                 early_stopping_fraction=0.25)
    stops = lambda step, best_step, bad: training.patience_exhausted(
        cfg, step, best_step, bad)
    # A short run: the validation floor decides.
    assert not stops(step=8, best_step=4, bad=1)
    assert stops(step=12, best_step=4, bad=2)
    # A long run: a quarter of the best step's count past it (2,085 + 522).
    assert not stops(step=2500, best_step=2085, bad=3)
    assert not stops(step=2606, best_step=2085, bad=5)
    assert stops(step=2607, best_step=2085, bad=2)
    # Fraction 0: validations alone, as a fixed patience.
    plain = config_lib.TrainConfig(early_stopping_patience=5,
                                   early_stopping_fraction=0)
    assert not training.patience_exhausted(plain, 2780, 2085, 4)
    assert training.patience_exhausted(plain, 2780, 2085, 5)


def test_without_validation_trains_whole_epochs_to_the_step_budget(
        tiny_video_data, tmp_path):
    cfg = video_config(tiny_video_data, tmp_path / "run",
                       validate_data_pattern="", auto_train_steps=10)
    result = training.train(cfg)
    # 128 training videos / batch 32 = 4 steps an epoch: 3 epochs reach 10.
    assert result.step == 12
    assert "auto_train_steps" in result.stop_reason
    assert result.best_step is None


def test_num_epochs_caps_early_stopping(tiny_video_data, tmp_path):
    cfg = video_config(tiny_video_data, tmp_path / "run", num_epochs=2,
                       early_stopping_patience=50, validate_every_steps=1)
    result = training.train(cfg)
    assert result.step == 8
    assert result.stop_reason == "reached 2 epochs"
    assert [s for s, _ in result.validations] == [0, 4, 8]


def test_final_export_refits_only_when_the_best_fit_saw_part_of_the_set(
        tiny_video_data, tmp_path, monkeypatch):
    fits = []
    fit_subspace = training.Trainer.fit_subspace

    def counted(trainer, max_examples=0):
        fits.append((max_examples, int(trainer.step.numpy())))
        return fit_subspace(trainer, max_examples)
    monkeypatch.setattr(training.Trainer, "fit_subspace", counted)
    results = {}
    # 0: every periodic fit sees all 128 training videos; 64: half of them.
    for limit in (0, 64):
        fits.clear()
        cfg = video_config(tiny_video_data, tmp_path / f"run{limit}",
                           num_epochs=2, early_stopping_patience=50,
                           validate_every_steps=1,
                           subspace_fit_examples=limit)
        result = training.train(cfg)
        results[limit] = (result, list(fits))
        scores = [v for _, v in result.validations]
        best = result.validations[int(np.argmax(scores))][0]
        assert result.best_step == best
        assert result.export_dir.endswith(f"step_{best:08d}")
        evaluated = evaluation.evaluate_checkpoint(
            cfg.train_dir, cfg.validate_data_pattern, cfg.top_k)
        assert training.selection_score(result.validation) == pytest.approx(
            training.selection_score(evaluated), abs=1e-6)
    # One fit per validation (steps 0, 4, 8); the best model's export is
    # already final, so the end fits nothing again.
    assert results[0][1] == [(0, 0), (0, 4), (0, 8)]
    # A partial fit is redone on the whole set for the kept model.
    assert results[64][1] == [(64, 0), (64, 4), (64, 8),
                              (0, results[64][0].step)]


def test_weighted_labels_repeat_those_videos_each_epoch(tiny_video_data,
                                                        tmp_path):
    cfg = video_config(tiny_video_data, tmp_path / "run", batch_size=16,
                       weighted_labels=(1,), label_weight=3)
    trainer = training.Trainer(cfg)
    seen = collections.Counter()
    for batch in readers.iterate(trainer.epoch_dataset(0, 0)):
        seen.update(x.decode() for x in batch["id"].numpy())
    reader = readers.reader_for(cfg.data, ragged_labels=True)
    expected = {}
    for batch in reader.batches(cfg.train_data_pattern, 64):
        for vid, labels in zip(batch["id"].numpy(), batch["labels"].to_list()):
            expected[vid.decode()] = 3 if 1 in labels else 1
    assert 0 < sum(v == 3 for v in expected.values()) < len(expected)
    # Every video appears its weight's times, except the few of the last
    # incomplete batch, which is dropped.
    missing = sum(expected.values()) - sum(seen.values())
    assert 0 <= missing < cfg.batch_size
    assert all(seen[k] <= w for k, w in expected.items())
    assert sum(seen[k] < w for k, w in expected.items()) <= missing


def _weighted_canonical_correlations(video, audio, weights):
    """Reference: float64 numpy CCA of the rows repeated `weights` times."""
    rows = np.repeat(np.arange(len(video)), weights)
    x, y = video[rows], audio[rows]
    x, y = x - x.mean(0), y - y.mean(0)
    n = len(x) - 1
    cxx, cyy, cxy = x.T @ x / n, y.T @ y / n, x.T @ y / n

    def inv_sqrt(c):
        values, vectors = np.linalg.eigh(c)
        return vectors @ np.diag(values ** -0.5) @ vectors.T

    return np.linalg.svd(inv_sqrt(cxx) @ cxy @ inv_sqrt(cyy),
                         compute_uv=False)


def test_input_projection_is_the_weighted_linear_cca_of_the_training_set(
        tiny_video_data, tmp_path):
    model_config = {**VIDEO_MODEL, "cca_input_dim": 6, "cca_input_ridge": 0.0,
                    "linear_skip": True}
    # One epoch: the run only has to checkpoint the projection.
    cfg = video_config(tiny_video_data, tmp_path / "run",
                       model_config=model_config, weighted_labels=(2,),
                       label_weight=4, num_epochs=1)
    trainer = training.Trainer(cfg)
    reader = readers.reader_for(cfg.data, ragged_labels=True)
    video, audio, weights = [], [], []
    for batch in reader.batches(cfg.train_data_pattern, 64):
        video.append(batch["video"].numpy())
        audio.append(batch["audio"].numpy())
        weights += [4 if 2 in l else 1 for l in batch["labels"].to_list()]
    normalize = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    video = normalize(np.concatenate(video).astype(np.float64))
    audio = normalize(np.concatenate(audio).astype(np.float64))
    expected = _weighted_canonical_correlations(video, audio, weights)[:6]
    # The projected training features are the canonical variates: unit
    # (weighted) variance, cross-covariance diag(correlations).
    towers = trainer.model.video_tower, trainer.model.audio_tower
    pv = towers[0].input_projection(video.astype(np.float32)).numpy()
    pa = towers[1].input_projection(audio.astype(np.float32)).numpy()
    rows = np.repeat(np.arange(len(pv)), weights)
    pv, pa = pv[rows].astype(np.float64), pa[rows].astype(np.float64)
    cross = (pv - pv.mean(0)).T @ (pa - pa.mean(0)) / (len(pv) - 1)
    np.testing.assert_allclose(np.abs(np.diag(cross)), expected, atol=2e-4)
    np.testing.assert_allclose(np.cov(pv, rowvar=False), np.eye(6),
                               atol=2e-4)
    # linear_skip: the untrained tower is exactly the first E coordinates.
    emb = trainer.model({"video": tf.constant(video, tf.float32),
                         "audio": tf.constant(audio, tf.float32)})
    np.testing.assert_allclose(
        emb["video"].numpy(),
        towers[0].input_projection(video.astype(np.float32)).numpy()[:, :4],
        atol=1e-5)
    # The projection is saved with the model: restored from the checkpoint.
    result = trainer.run()
    _, model, _, _ = modeling.restore(cfg.train_dir)
    np.testing.assert_array_equal(
        model.video_tower.input_projection.projection.numpy(),
        trainer.model.video_tower.input_projection.projection.numpy())
    assert result.best_step is not None


def test_bad_schedule_fields_name_the_field():
    with pytest.raises(config_lib.ConfigError, match="early_stopping_patience"):
        config_lib.TrainConfig(early_stopping_patience=-1)
    with pytest.raises(config_lib.ConfigError, match="early_stopping_fraction"):
        config_lib.TrainConfig(early_stopping_fraction=-0.5)
    with pytest.raises(config_lib.ConfigError, match="weighted_labels"):
        config_lib.TrainConfig(weighted_labels="music")
    with pytest.raises(config_lib.ConfigError, match="linear_skip"):
        config_lib.VideoLevelMlpConfig(cca_input_dim=8, embedding_dim=16,
                                       linear_skip=True)


def test_early_stopping_under_a_two_replica_strategy(tiny_video_data,
                                                     tmp_path):
    # The stop decision is all-reduced over the replicas (workers), so every
    # one of them leaves the loop at the same step.
    cfg = video_config(tiny_video_data, tmp_path / "run",
                       distribution_strategy="mirrored",
                       early_stopping_patience=1, validate_every_steps=1,
                       base_learning_rate=3e-2, num_epochs=20)
    trainer = training.Trainer(cfg)
    assert trainer.strategy.num_replicas_in_sync == 2
    assert trainer._agreed(0.25) == pytest.approx(0.25)
    result = trainer.run()
    scores = [v for _, v in result.validations]
    assert result.best_step == result.validations[int(np.argmax(scores))][0]
    assert result.export_dir.endswith(f"step_{result.best_step:08d}")
