"""bench/frame_level_results.py: --reuse_runs bookkeeping, the reuse of the
generated data, the linear-CCA baseline's runs and choice, and the training
figures read from the file train.py writes."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench import frame_level_results as flr  # noqa: E402


def test_reuse_needs_same_command_and_existing_outputs(tmp_path):
    out = tmp_path / "out.txt"
    log = str(tmp_path / "step.log")

    def command(tag):
        return [sys.executable, "-c",
                f"open({str(out)!r}, 'a').write({tag!r}); print('ran')"]

    def runs(cmd, **kwargs):
        before = out.read_text() if out.exists() else ""
        flr.run_command(cmd, log, **kwargs)
        return (out.read_text() if out.exists() else "") != before

    assert runs(command("a"), reuse=True, outputs=[str(out)])  # first time
    assert not runs(command("a"), reuse=True, outputs=[str(out)])  # reused
    assert "ran" in open(log).read()  # the reused log is the recorded one
    assert runs(command("b"), reuse=True, outputs=[str(out)])  # new command
    out.unlink()  # e.g. train.py --start_new_model wiped the train dir
    assert runs(command("b"), reuse=True, outputs=[str(out)])
    assert runs(command("b"))  # no reuse asked: always runs


def test_training_figures_come_from_train_result_json(trained_dir):
    # trained_dir is written by training.train, the same code train.py runs,
    # so the keys read here are the ones the package writes.
    figures = flr.read_train_result(str(trained_dir))
    assert figures["step"] == 4
    assert figures["examples"] == 4 * 32  # max_steps x batch_size
    assert 0 < figures["step_seconds"] <= figures["wall_seconds"]
    assert figures["examples_per_second"] == (
        figures["examples"] / figures["step_seconds"])


def test_missing_train_result_names_the_file(tmp_path):
    with pytest.raises(RuntimeError, match=f"{tmp_path}/train_result.json"):
        flr.read_train_result(str(tmp_path))
    (tmp_path / "train_result.json").write_text('{"step": 3}')
    with pytest.raises(RuntimeError, match="lacks wall_seconds"):
        flr.read_train_result(str(tmp_path))


def _result(r10_a2v, r10_v2a):
    return {"audio_to_video": {"recall@10": r10_a2v},
            "video_to_audio": {"recall@10": r10_v2a}}


def test_linear_cca_baseline_is_chosen_on_validation():
    validations = {"a": _result(0.2, 0.4), "b": _result(0.5, 0.2),
                   "c": _result(0.4, 0.1)}
    assert flr.best_on_validation(validations) == "b"  # 0.35 > 0.3 > 0.25
    # Of equal scores the first tried wins, so a rerun picks the same run.
    validations["d"] = _result(0.2, 0.5)
    assert flr.best_on_validation(validations) == "b"


def test_linear_cca_candidates_are_valid_linear_cca_model_runs():
    # Each candidate is a train.py command line of the product's baseline
    # that the frame-level data (the default feature sizes) accepts.
    from yt8m_xmodal import config as config_lib
    candidates = flr.linear_cca_candidates()
    assert len(set(candidates)) == (len(flr.LINEAR_CCA_RIDGES)
                                    * len(flr.LINEAR_CCA_DIMS))
    for flags in candidates:
        values = dict(f[2:].split("=") for f in flags)
        assert values["model"] == "LinearCcaModel"
        cfg = config_lib.TrainConfig(
            model="LinearCcaModel",
            model_config={"linear_cca_ridge": float(values[
                "linear_cca_ridge"])},
            subspace_dim=int(values["subspace_dim"]))
        assert cfg.model_config.linear_cca_ridge in flr.LINEAR_CCA_RIDGES
        assert cfg.subspace_dim in flr.LINEAR_CCA_DIMS
    # A smoke run still chooses between candidates of the full sweep.
    quick = flr.linear_cca_candidates(quick=True)
    assert len(set(quick)) >= 2 and set(quick) <= set(candidates)


def test_data_is_reused_only_when_made_with_the_same_options(tmp_path,
                                                             monkeypatch):
    made = []

    def generate_dataset(data_dir, num_videos, num_shards, **frames):
        # What the generator writes to dataset.json, of the keys compared.
        made.append((num_videos, frames["max_frames"]))
        info = dict(frames, num_videos=flr.synthetic.split_sizes(num_videos),
                    generator_version=flr.synthetic.GENERATOR_VERSION)
        with open(os.path.join(data_dir, "dataset.json"), "w") as f:
            json.dump(info, f)
        return info

    monkeypatch.setattr(flr.synthetic, "generate_dataset", generate_dataset)
    data_dir = str(tmp_path)
    flr.ensure_data(data_dir, 400, quick=True)
    flr.ensure_data(data_dir, 400, quick=True)
    assert made == [(400, 90)]  # reused
    flr.ensure_data(data_dir, 400, quick=False)  # full-length videos
    flr.ensure_data(data_dir, 500, quick=False)
    assert made == [(400, 90), (400, flr.synthetic.DEFAULT_MAX_FRAMES),
                    (500, flr.synthetic.DEFAULT_MAX_FRAMES)]
