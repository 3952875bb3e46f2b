"""End-to-end tests of the training loop on small synthetic data."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, TINY_FEATURE_SIZES
import prewarmed
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import evaluation
from yt8m_xmodal import modeling
from yt8m_xmodal import models
from yt8m_xmodal import readers
from yt8m_xmodal import rundir
from yt8m_xmodal import training
from yt8m_xmodal.errors import ConfigError

# Small towers; 40 frames in chunks of 8 give 5 chunk positions, so the
# recipe's slot pooling takes an embedding of 5.
TINY_MODEL = {"embedding_dim": 5, "rnn_units": 8, "hidden_units": 16,
              "attention_units": 8, "num_heads": 2, "chunk_size": 8}
TINY_DATA = dict(feature_sizes=TINY_FEATURE_SIZES, max_frames=40,
                 num_classes=4)


def tiny_config(data_dir, train_dir, model="ChunkAttentionModel", loss=None,
                frame_features=True, model_config=None, **overrides):
    """The shipped recipe on the tiny data, with small towers."""
    fields = {f.name for f in dataclasses.fields(
        config_lib.MODEL_CONFIGS[model])}
    model_config = {**{k: v for k, v in TINY_MODEL.items() if k in fields},
                    **(model_config or {})}
    recipe = config_lib.recipe(frame_features)
    schedule = dict(
        train_data_pattern=os.path.join(data_dir, "train-*"),
        validate_data_pattern=os.path.join(data_dir, "validate-*"),
        train_dir=str(train_dir), subspace_dim=2, batch_size=32, num_epochs=1,
        max_steps=3, export_model_steps=3, log_every_steps=1, seed=1)
    return recipe.replace(
        data=config_lib.DataConfig(frame_features=frame_features, **TINY_DATA),
        model=model, model_config=model_config, loss=loss or recipe.loss,
        **{**schedule, **overrides})


def assert_trained(cfg, result, steps, trainer=None):
    assert result.step == steps
    if trainer is not None:
        # What eval.py restores is exactly what was trained, weight for weight.
        _, model, subspace, step = modeling.restore(cfg.train_dir)
        assert step == steps
        trained = trainer.model.weights + trainer.subspace.weights
        restored = model.weights + subspace.weights
        assert len(trained) == len(restored) > 0
        for a, b in zip(trained, restored):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert rundir.read_model_flags(cfg.train_dir) == cfg
    assert tf.train.latest_checkpoint(cfg.train_dir).endswith(f"ckpt-{steps}")
    assert os.path.isdir(os.path.join(result.export_dir, "saved_model"))
    # The validation figures of training are eval.py's figures for the final
    # checkpoint on the same records.
    evaluated = evaluation.evaluate_checkpoint(
        cfg.train_dir, cfg.validate_data_pattern, cfg.top_k)
    assert result.validation["num_queries"] == evaluated["num_queries"] > 0
    for direction in ("audio_to_video", "video_to_audio"):
        for key in ("recall@1", "recall@10", "mrr", "median_rank"):
            assert result.validation[direction][key] == pytest.approx(
                evaluated[direction][key], abs=1e-6), (direction, key)
    recorded = json.loads(open(os.path.join(
        cfg.train_dir, rundir.TRAIN_RESULT_FILE)).read())
    assert recorded["step"] == steps
    assert recorded["export_dir"] == result.export_dir


@pytest.mark.parametrize("model,model_config", [
    (m, None) for m in models.MODELS
    if m not in ("VideoLevelMlpModel", "LinearCcaModel")]
    + [("ChunkAttentionModel", {"attention": "mean"})])
def test_every_frame_model_trains_and_checkpoints(tiny_frame_data, tmp_path,
                                                  model, model_config):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model=model,
                      model_config=model_config)
    trainer = training.Trainer(cfg)
    assert_trained(cfg, trainer.run(), 3, trainer)


def test_video_level_model_trains(tiny_video_data, tmp_path):
    cfg = tiny_config(tiny_video_data, tmp_path / "run",
                      model="VideoLevelMlpModel", frame_features=False)
    trainer = training.Trainer(cfg)
    assert_trained(cfg, trainer.run(), 3, trainer)


@pytest.mark.parametrize("loss", ["dcca", "cluster_cca", "soft_cca", "triplet"])
def test_every_loss_trains(tiny_frame_data, tmp_path, loss):
    # The plain loop (one fit, checkpoint, export and validation, at step 3):
    # early stopping does not depend on the loss, and the frame-model tests
    # above run it.
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel",
                      loss=loss, early_stopping_patience=0)
    assert_trained(cfg, training.train(cfg), 3)


@pytest.fixture(scope="module")
def two_step_run(tiny_frame_data, tmp_path_factory):
    """A MeanPoolModel run of 2 steps, checkpointed and exported at step 2.

    Tests that continue, wipe or refuse a finished run start from a copy of
    it (checkpoint paths are relative to train_dir), so it is trained once.
    The plain loop: early stopping and its resumption are
    test_early_stopping's.
    """
    cfg = tiny_config(tiny_frame_data, tmp_path_factory.mktemp("two_step") / "run",
                      model="MeanPoolModel", max_steps=2, export_model_steps=2,
                      early_stopping_patience=0)
    training.train(cfg)
    return cfg


def copy_of_run(run_cfg, train_dir):
    """`run_cfg` with its train_dir copied to `train_dir`."""
    shutil.copytree(run_cfg.train_dir, train_dir)
    return run_cfg.replace(train_dir=str(train_dir))


def test_rerun_resumes_from_checkpoint(two_step_run, tmp_path):
    # Continues the 2-step run to step 4, then reruns from step 4.
    cfg = copy_of_run(two_step_run, tmp_path / "run").replace(
        max_steps=4, num_epochs=5)
    assert training.train(cfg).step == 4
    cfg = cfg.replace(max_steps=7)
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


def test_periodic_exports_fit_the_subspace_on_a_sample_the_last_on_all(
        tiny_frame_data, tmp_path):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel",
                      max_steps=4, export_model_steps=2, num_epochs=5,
                      subspace_fit_examples=32, early_stopping_patience=0)
    trainer = training.Trainer(cfg)
    fitted_on = []
    fit = trainer.fit_subspace

    def recording_fit(max_examples=0):
        correlations = fit(max_examples)
        fitted_on.append(int(trainer.subspace.count.numpy()))
        return correlations
    trainer.fit_subspace = recording_fit
    trainer.run()
    # Steps 2 and 4 export on a sample of one batch; the run ends on a
    # sampled export, so it exports once more on all 128 training videos.
    assert fitted_on == [32, 32, 128]
    _, _, subspace, step = modeling.restore(cfg.train_dir)
    assert step == 4 and int(subspace.count.numpy()) == 128


def test_start_new_model_wipes_train_dir(two_step_run, tmp_path):
    cfg = copy_of_run(two_step_run, tmp_path / "run")
    assert tf.train.latest_checkpoint(cfg.train_dir).endswith("ckpt-2")
    cfg = cfg.replace(start_new_model=True, max_steps=1, export_model_steps=1)
    assert training.train(cfg).step == 1


def test_other_flags_in_same_train_dir_are_refused(tiny_frame_data,
                                                   two_step_run, tmp_path):
    copy_of_run(two_step_run, tmp_path / "run")
    other = tiny_config(tiny_frame_data, tmp_path / "run", model="FrameLstmModel")
    with pytest.raises(ConfigError, match="start_new_model=true"):
        training.train(other)


@pytest.mark.parametrize("change, field", [
    ({"model": "NoSuchModel"}, "model=NoSuchModel"),
    ({"loss": "no_such_loss"}, "loss=no_such_loss"),
    ({"loss": "dcca", "batch_size": 6}, "batch_size=6"),
    ({"subspace_dim": 9}, "subspace_dim=9"),
    ({"optimizer": "lbfgs"}, "optimizer=lbfgs"),
    ({"distribution_strategy": "tpu"}, "distribution_strategy=tpu"),
    ({"model": "VideoLevelMlpModel"}, "frame_features=true"),
])
def test_bad_configs_fail_at_once_naming_the_field(tiny_frame_data, tmp_path,
                                                   change, field):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel")
    with pytest.raises(ConfigError) as info:
        cfg.replace(**change)
    assert field in str(info.value)


def test_missing_training_data_names_the_pattern(tiny_frame_data, tmp_path):
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel",
                      train_data_pattern="/nonexistent/train-*")
    with pytest.raises(ValueError, match="/nonexistent/train-"):
        training.train(cfg)


def test_feature_lists_must_agree():
    with pytest.raises(ConfigError, match="feature_sizes"):
        config_lib.DataConfig(feature_names=("rgb", "audio"),
                              feature_sizes="1024")


def poison_loss(trainer, bad_calls):
    """Makes the loss NaN on the given (1-based) calls of the train step."""
    calls = tf.Variable(0, dtype=tf.int64, trainable=False)
    compute = trainer.loss.compute
    bad = tf.constant(bad_calls, tf.int64)

    def poisoned(video, audio, labels=None, **kwargs):
        out = dict(compute(video, audio, labels, **kwargs))
        calls.assign_add(1)
        is_bad = tf.reduce_any(tf.equal(calls, bad))
        out["loss"] = tf.where(is_bad, tf.constant(float("nan"), out["loss"].dtype),
                               out["loss"])
        return out

    trainer.loss.compute = poisoned


def weights_of(model):
    return [w.numpy().copy() for w in model.weights]


def test_nonfinite_loss_stops_without_applying_the_update(two_step_run,
                                                          tmp_path):
    cfg = copy_of_run(two_step_run, tmp_path / "run")
    good = tf.train.latest_checkpoint(cfg.train_dir)
    cfg = cfg.replace(max_steps=6)
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
                      max_steps=3, num_epochs=5, skip_nonfinite_steps=True,
                      early_stopping_patience=0)
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
        two_step_run, tmp_path):
    cfg = copy_of_run(two_step_run, tmp_path / "run")
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
    # Checkpoints every 10 steps: the first comes early, and the 3 more
    # exports a run needs to reach step 40 take longer than the second
    # before the kill, so the kill falls mid-training.
    cmd = _train_command(tiny_frame_data, train_dir, 40, 10)
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

    out = prewarmed.run(cmd, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resumed from {killed_at}" in out.stderr
    assert tf.train.latest_checkpoint(str(train_dir)).endswith("ckpt-40")


def test_train_script_reports_bad_flag_in_one_line(tmp_path):
    out = prewarmed.run(
        [sys.executable, str(REPO_ROOT / "train.py"),
         "--train_data_pattern=/nonexistent/*.tfrecord",
         f"--train_dir={tmp_path}/run", "--model=NoSuchModel"], timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "--model=NoSuchModel" in out.stderr.strip().splitlines()[-1]


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
    training set's embeddings, before training and after it. Two epochs (50
    steps) clear both margins by far; later epochs of a longer run add
    little. Without early stopping, "after" is the model of the last step,
    never an earlier one kept as the best.
    """
    cfg = tiny_config(learning_data, tmp_path / "run", batch_size=32,
                      max_steps=0, num_epochs=2, export_model_steps=10_000,
                      early_stopping_patience=0,
                      subspace_dim=4, base_learning_rate=3e-3,
                      model_config=dict(embedding_dim=8, rnn_units=16,
                                        chunk_size=10, attention_units=16,
                                        hidden_units=32))
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
    """The video-level recipe on real YT8M video-level records."""
    cfg = config_lib.VIDEO_LEVEL_RECIPE.replace(
        train_data_pattern=f"{shared_video_dir}/validate000[0-1].tfrecord",
        validate_data_pattern=f"{shared_video_dir}/validate0002.tfrecord",
        train_dir=str(tmp_path / "run"),
        model_config={"embedding_dim": 16, "hidden_units": 64}, subspace_dim=8,
        batch_size=64, num_epochs=1, max_steps=6, export_model_steps=6, seed=0)
    trainer = training.Trainer(cfg)
    result = trainer.run()
    assert result.step == 6
    # validate0002 holds 313 records (count them with TFRecordDataset).
    assert result.validation["num_queries"] == 313
    assert_trained(cfg, result, 6, trainer)


# One recipe -------------------------------------------------------------------

def _parse_train_flags(*argv):
    from absl import flags
    from yt8m_xmodal.cli import train as train_cli
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.py", *argv])
    try:
        return train_cli.config_from_flags()
    finally:
        flags.FLAGS.unparse_flags()


def test_cli_defaults_library_defaults_and_configs_agree(tmp_path):
    """train.py with no recipe flags, TrainConfig() and the library classes
    build the same model and the same run configuration."""
    cfg = _parse_train_flags("--train_data_pattern=/data/train*",
                             f"--train_dir={tmp_path}")
    recipe = config_lib.TrainConfig()
    assert cfg == recipe.replace(train_data_pattern="/data/train*",
                                 train_dir=str(tmp_path))
    from_cli = models.model_from_config(cfg.model, cfg.data, cfg.model_config)
    unnamed = lambda m: {**m.get_config(), "name": None}  # noqa: E731
    assert unnamed(from_cli) == unnamed(models.ChunkAttentionModel())
    assert cfg.loss == "infonce"
    assert losses_config(cfg) == losses_config(recipe)


def losses_config(cfg):
    from yt8m_xmodal import losses
    config = losses.build_loss(cfg.loss, cfg.loss_config).get_config()
    return {**config, "name": None}


def test_noframe_features_takes_the_video_level_recipe_for_unset_flags(
        tmp_path):
    cfg = _parse_train_flags("--train_data_pattern=/data/train*",
                             "--noframe_features", "--embedding_dim=80",
                             "--batch_size=512")
    video = config_lib.VIDEO_LEVEL_RECIPE
    assert (cfg.model, cfg.loss) == (video.model, video.loss)
    assert cfg.model_config.embedding_dim == 80 and cfg.batch_size == 512
    assert cfg.loss_config == video.loss_config  # cca_ridge 1e-4
    assert (cfg.subspace_dim, cfg.base_learning_rate) == (
        video.subspace_dim, video.base_learning_rate)
    assert cfg.data.feature_names == ("mean_rgb", "mean_audio")
    cfg = _parse_train_flags("--train_data_pattern=/data/train*",
                             "--noframe_features", "--cca_ridge=0.5")
    assert cfg.loss_config.cca_ridge == 0.5
    # Another --model or --loss takes that model's or loss's own defaults.
    cfg = _parse_train_flags("--train_data_pattern=/data/train*",
                             "--model=FrameLstmModel", "--loss=dcca")
    assert cfg.model_config == config_lib.FrameLstmConfig()
    assert cfg.loss_config == config_lib.DeepCcaConfig()


def test_default_run_trains_exports_and_reloads_the_shipped_recipe(
        tiny_frame_data, tmp_path):
    """`python train.py` with only data and schedule flags writes a
    model_flags.json whose model and loss are the shipped recipe's, and its
    export serves the embeddings of the restored checkpoint."""
    train_dir = tmp_path / "run"
    out = prewarmed.run(
        [sys.executable, str(REPO_ROOT / "train.py"),
         f"--train_data_pattern={tiny_frame_data}/train-*",
         f"--validate_data_pattern={tiny_frame_data}/validate-*",
         f"--train_dir={train_dir}",
         f"--feature_sizes={','.join(map(str, TINY_FEATURE_SIZES))}",
         "--num_classes=4", "--batch_size=32", "--max_steps=2",
         "--export_model_steps=2"], timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    written = rundir.read_model_flags(str(train_dir))
    recipe = config_lib.TrainConfig()
    for field in ("model", "model_config", "loss", "loss_config",
                  "subspace_dim", "base_learning_rate", "optimizer"):
        assert getattr(written, field) == getattr(recipe, field), field
    config, model, subspace, step = modeling.restore(str(train_dir))
    assert config == written and step == 2
    emb = evaluation.embed_dataset(
        model, readers.reader_for(config.data).batches(
            f"{tiny_frame_data}/validate-*", 64), subspace=subspace)
    serve = modeling.load_signatures(
        modeling.latest_export(str(train_dir)))["serving_default"]
    records = [r.numpy() for r in tf.data.TFRecordDataset(
        sorted(tf.io.gfile.glob(f"{tiny_frame_data}/validate-*")))]
    served = serve(serialized=tf.constant(records))
    np.testing.assert_array_equal(served["id"].numpy().astype(str), emb.ids)
    np.testing.assert_allclose(served["audio"].numpy(), emb.audio, atol=1e-5)
    np.testing.assert_allclose(served["video"].numpy(), emb.video, atol=1e-5)
