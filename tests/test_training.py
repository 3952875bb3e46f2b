"""End-to-end tests of the training loop on small synthetic data."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, TINY_FEATURE_SIZES
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import evaluation
from yt8m_xmodal import models
from yt8m_xmodal import training
from yt8m_xmodal.errors import FlagError

TINY_MODEL = {"embedding_dim": 4, "rnn_units": 8, "hidden_units": 16,
              "attention_units": 8, "num_heads": 2, "chunk_size": 8,
              "max_frames": 40}


def tiny_config(data_dir, train_dir, model="ChunkAttentionModel", loss="dcca",
                frame_features=True, **overrides):
    data = config_lib.DataConfig.from_flags(
        frame_features, "", ",".join(map(str, TINY_FEATURE_SIZES)), 40, 4)
    accepted = models.config_names(models.MODELS[model])
    cfg = training.TrainConfig(
        train_data_pattern=os.path.join(data_dir, "train-*"),
        validate_data_pattern=os.path.join(data_dir, "validate-*"),
        train_dir=str(train_dir), data=data, model=model,
        model_config={k: v for k, v in TINY_MODEL.items() if k in accepted},
        loss=loss, subspace_dim=2, batch_size=32, num_epochs=1, max_steps=3,
        export_model_steps=3, log_every_steps=1, seed=1)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def assert_trained(cfg, result, steps, trainer=None):
    assert result.step == steps
    if trainer is not None:
        # What eval.py restores is exactly what was trained, weight for weight.
        _, model, subspace, step = evaluation.load_model(cfg.train_dir)
        assert step == steps
        trained = trainer.model.weights + trainer.subspace.weights
        restored = model.weights + subspace.weights
        assert len(trained) == len(restored) > 0
        for a, b in zip(trained, restored):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    flags = config_lib.read_model_flags(cfg.train_dir)
    assert flags == cfg.model_flags()
    assert tf.train.latest_checkpoint(cfg.train_dir).endswith(f"ckpt-{steps}")
    assert os.path.isdir(os.path.join(result.export_dir, "saved_model"))
    for direction in ("audio_to_video", "video_to_audio"):
        assert 0.0 <= result.validation[direction]["recall@20"] <= 1.0


@pytest.mark.parametrize("model", [m for m in models.MODELS
                                   if m != "VideoLevelMlpModel"])
def test_every_frame_model_trains_and_checkpoints(tiny_frame_data, tmp_path, model):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model=model)
    trainer = training.Trainer(cfg)
    assert_trained(cfg, trainer.run(), 3, trainer)


def test_video_level_model_trains(tiny_video_data, tmp_path):
    cfg = tiny_config(tiny_video_data, tmp_path / "run",
                      model="VideoLevelMlpModel", frame_features=False)
    trainer = training.Trainer(cfg)
    assert_trained(cfg, trainer.run(), 3, trainer)


@pytest.mark.parametrize("loss", ["cluster_cca", "soft_cca", "infonce", "triplet"])
def test_every_loss_trains(tiny_frame_data, tmp_path, loss):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel",
                      loss=loss)
    assert_trained(cfg, training.train(cfg), 3)


def test_rerun_resumes_from_checkpoint(tiny_frame_data, tmp_path):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel",
                      max_steps=4, export_model_steps=2, num_epochs=5)
    training.train(cfg)
    cfg.max_steps = 7
    trainer = training.Trainer(cfg)
    # Restored, not restarted: step, data position and optimizer moments.
    assert int(trainer.step.numpy()) == 4
    assert int(trainer.optimizer.iterations.numpy()) == 4
    # 128 train videos / batch 32 = 4 batches: epoch 0 is used up.
    assert (int(trainer.epoch.numpy()), int(trainer.batch_in_epoch.numpy())) in (
        (0, 4), (1, 0))
    result = trainer.run()
    assert result.step == 7
    assert tf.train.latest_checkpoint(cfg.train_dir).endswith("ckpt-7")


def test_start_new_model_wipes_train_dir(tiny_frame_data, tmp_path):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel",
                      max_steps=2, export_model_steps=2)
    training.train(cfg)
    cfg.start_new_model = True
    cfg.max_steps = 1
    cfg.export_model_steps = 1
    assert training.train(cfg).step == 1


def test_other_flags_in_same_train_dir_are_refused(tiny_frame_data, tmp_path):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel",
                      max_steps=1, export_model_steps=1)
    training.train(cfg)
    other = tiny_config(tiny_frame_data, tmp_path / "run", model="FrameLstmModel")
    with pytest.raises(FlagError, match="--start_new_model"):
        training.train(other)


@pytest.mark.parametrize("change, flag", [
    ({"model": "NoSuchModel"}, "--model"),
    ({"loss": "no_such_loss"}, "--loss"),
    ({"batch_size": 6}, "--batch_size"),
    ({"subspace_dim": 9}, "--subspace_dim"),
    ({"optimizer": "lbfgs"}, "--optimizer"),
    ({"distribution_strategy": "tpu"}, "--distribution_strategy"),
    ({"train_data_pattern": "/nonexistent/train-*"}, "/nonexistent/train-"),
])
def test_bad_flags_fail_at_start_naming_the_flag(tiny_frame_data, tmp_path,
                                                 change, flag):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel")
    for key, value in change.items():
        setattr(cfg, key, value)
    with pytest.raises((FlagError, ValueError)) as info:
        training.train(cfg)
    assert flag in str(info.value)


def test_feature_flags_must_agree():
    with pytest.raises(FlagError, match="--feature_sizes"):
        config_lib.DataConfig.from_flags(True, "rgb,audio", "1024", 300)


def poison_loss(trainer, bad_calls):
    """Makes the loss NaN on the given (1-based) calls of the train step."""
    calls = tf.Variable(0, dtype=tf.int64, trainable=False)
    compute = trainer.loss.compute
    bad = tf.constant(bad_calls, tf.int64)

    def poisoned(video, audio, labels=None):
        out = dict(compute(video, audio, labels))
        calls.assign_add(1)
        is_bad = tf.reduce_any(tf.equal(calls, bad))
        out["loss"] = tf.where(is_bad, tf.constant(float("nan"), out["loss"].dtype),
                               out["loss"])
        return out

    trainer.loss.compute = poisoned


def weights_of(model):
    return [w.numpy().copy() for w in model.weights]


def test_nonfinite_loss_stops_without_applying_the_update(tiny_frame_data, tmp_path):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel",
                      max_steps=2, export_model_steps=2)
    training.train(cfg)
    good = tf.train.latest_checkpoint(cfg.train_dir)
    cfg.max_steps = 6
    trainer = training.Trainer(cfg)
    poison_loss(trainer, [2])
    with pytest.raises(training.NonFiniteStepError, match="not finite"):
        trainer.run()
    assert int(trainer.step.numpy()) == 3
    after_good_step = weights_of(trainer.model)
    # The NaN step changed nothing: not the weights, not the optimizer state.
    assert int(trainer.optimizer.iterations.numpy()) == 3
    assert all(np.all(np.isfinite(w)) for w in after_good_step)
    assert tf.train.latest_checkpoint(cfg.train_dir) == good
    result = evaluation.evaluate_checkpoint(
        cfg.train_dir, cfg.validate_data_pattern, (1, 5))
    assert result["step"] == 2


def test_nonfinite_steps_can_be_skipped_and_counted(tiny_frame_data, tmp_path):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel",
                      max_steps=3, num_epochs=5, skip_nonfinite_steps=True)
    trainer = training.Trainer(cfg)
    poison_loss(trainer, [2, 3])
    before = weights_of(trainer.model)
    result = trainer.run()
    assert trainer.skipped_nonfinite == 2
    assert result.step == 3 and result.skipped_nonfinite_steps == 2
    # 5 batches were read for 3 applied steps.
    assert int(trainer.optimizer.iterations.numpy()) == 3
    assert int(trainer.batch_in_epoch.numpy()) + 4 * int(trainer.epoch.numpy()) == 5
    assert not all(np.array_equal(a, b) for a, b in zip(before, weights_of(trainer.model)))


def test_diverged_model_never_replaces_the_last_good_checkpoint(
        tiny_frame_data, tmp_path):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel",
                      max_steps=2, export_model_steps=2)
    training.train(cfg)
    good = tf.train.latest_checkpoint(cfg.train_dir)
    trainer = training.Trainer(cfg)
    # Finite weights whose embeddings overflow float32, as after a huge step.
    for w in trainer.model.trainable_weights:
        w.assign(w * 1e30)
    with pytest.raises(training.NonFiniteStepError, match="no checkpoint"):
        trainer.checkpoint_and_export()
    assert tf.train.latest_checkpoint(cfg.train_dir) == good


def test_huge_learning_rate_stops_cleanly(tiny_frame_data, tmp_path):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel",
                      max_steps=20, num_epochs=10, optimizer="sgd",
                      base_learning_rate=1e30, clip_gradient_norm=0.0)
    trainer = training.Trainer(cfg)
    with pytest.raises(training.NonFiniteStepError):
        trainer.run()
    assert all(np.all(np.isfinite(w.numpy())) for w in trainer.model.weights)


def _train_command(data_dir, train_dir, max_steps, export_steps):
    return [sys.executable, str(REPO_ROOT / "train.py"),
            f"--train_data_pattern={data_dir}/train-*",
            f"--train_dir={train_dir}", "--model=MeanPoolModel",
            f"--feature_sizes={','.join(map(str, TINY_FEATURE_SIZES))}",
            "--max_frames=40", "--num_classes=4", "--embedding_dim=4",
            "--hidden_units=16", "--subspace_dim=2", "--batch_size=32",
            "--num_epochs=100", f"--max_steps={max_steps}",
            f"--export_model_steps={export_steps}", "--log_every_steps=1"]


def test_sigkill_during_training_then_rerun_resumes(tiny_frame_data, tmp_path):
    train_dir = tmp_path / "run"
    cmd = _train_command(tiny_frame_data, train_dir, 40, 3)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and tf.train.latest_checkpoint(str(train_dir)) is None:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = tf.train.latest_checkpoint(str(train_dir))
    assert killed_at is not None, "no checkpoint before the kill"
    step_at_kill = int(killed_at.rsplit("-", 1)[1])
    assert step_at_kill < 40
    json.loads((train_dir / "model_flags.json").read_text())

    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resumed from {killed_at}" in out.stderr
    assert tf.train.latest_checkpoint(str(train_dir)).endswith("ckpt-40")


def test_train_script_reports_bad_flag_in_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"),
         "--train_data_pattern=/nonexistent/*.tfrecord",
         f"--train_dir={tmp_path}/run", "--model=NoSuchModel"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "--model" in out.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def learning_data(tmp_path_factory):
    """1,000 synthetic videos: a validation gallery of 100, so R@10 means
    something (chance is 0.1)."""
    from yt8m_xmodal.tools import synthetic
    root = tmp_path_factory.mktemp("learning")
    synthetic.generate_dataset(
        str(root), num_videos=1000, seed=11, num_shards=2, min_frames=10,
        max_frames=40, feature_sizes=TINY_FEATURE_SIZES, num_classes=4)
    return root


def test_training_beats_the_untrained_model(learning_data, tmp_path):
    """A real learning check: validation retrieval must improve clearly.

    Both sides are scored the same way: the CCA subspace is fitted on the
    training set's embeddings, before training and after it.
    """
    cfg = tiny_config(learning_data, tmp_path / "run", batch_size=32,
                      max_steps=0, num_epochs=10, export_model_steps=10_000,
                      subspace_dim=4, base_learning_rate=3e-3)
    cfg.model_config.update(embedding_dim=8, rnn_units=16, chunk_size=10,
                            attention_units=16, hidden_units=32)
    trainer = training.Trainer(cfg)
    trainer.fit_subspace()
    before = trainer.validate()
    after = trainer.run().validation
    assert before["num_queries"] == after["num_queries"] == 100
    for direction in ("audio_to_video", "video_to_audio"):
        b, a = before[direction], after[direction]
        assert a["recall@10"] >= b["recall@10"] + 0.08, (before, after)
        assert a["median_rank"] <= 0.75 * b["median_rank"], (before, after)


def test_video_level_training_on_real_shards(shared_video_dir, tmp_path):
    """VideoLevelMlpModel on real YT8M video-level records (mean_rgb/audio)."""
    data = config_lib.DataConfig.from_flags(False, "", "1024,128", 300)
    cfg = training.TrainConfig(
        train_data_pattern=f"{shared_video_dir}/validate000[0-1].tfrecord",
        validate_data_pattern=f"{shared_video_dir}/validate0002.tfrecord",
        train_dir=str(tmp_path / "run"), data=data, model="VideoLevelMlpModel",
        model_config={"embedding_dim": 16, "hidden_units": 64}, subspace_dim=8,
        batch_size=64, num_epochs=1, max_steps=6, export_model_steps=6, seed=0)
    trainer = training.Trainer(cfg)
    result = trainer.run()
    assert result.step == 6
    # validate0002 holds 313 records (count them with TFRecordDataset).
    assert result.validation["num_queries"] == 313
    assert_trained(cfg, result, 6, trainer)


def test_video_level_defaults_fill_only_the_flags_not_given():
    from absl import flags
    values = flags.FlagValues()
    defaults = {"model": "ChunkAttentionModel", "loss": "infonce",
                "embedding_dim": 120, "subspace_dim": 96,
                "base_learning_rate": 3e-3, "cca_ridge": 1.0}
    for name, value in defaults.items():
        define = {str: flags.DEFINE_string, int: flags.DEFINE_integer,
                  float: flags.DEFINE_float}[type(value)]
        define(name, value, "", flag_values=values)
    flags.DEFINE_integer("batch_size", 256, "", flag_values=values)
    values(["train.py", "--embedding_dim=32", "--batch_size=64"])
    view = training._WithDefaults(values, training.VIDEO_LEVEL_DEFAULTS)
    assert view.embedding_dim == 32 and view.batch_size == 64
    for name in ("model", "loss", "subspace_dim", "base_learning_rate",
                 "cca_ridge"):
        assert getattr(view, name) == training.VIDEO_LEVEL_DEFAULTS[name]
    assert view.model == "VideoLevelMlpModel" and view.loss == "dcca"
    assert view.cca_ridge == 1e-4  # the ridge the video-level recipe used
    assert view["embedding_dim"].present and not view["loss"].present
    values(["train.py", "--cca_ridge=0.5"])
    assert training._WithDefaults(values, training.VIDEO_LEVEL_DEFAULTS
                                  ).cca_ridge == 0.5
