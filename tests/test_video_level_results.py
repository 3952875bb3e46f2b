"""bench/video_level_results.py and the gallery scoring it uses, against
brute force."""

import os
import pathlib
import shlex
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench import retrieval_report  # noqa: E402
from bench import video_level_results as vlr  # noqa: E402


def _cos(x, y):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return x @ y.T


def test_gallery_draws_rank_by_csls_within_each_gallery():
    rng = np.random.default_rng(3)
    audio = rng.normal(size=(40, 6))
    video = audio + rng.normal(scale=2.0, size=(40, 6))
    mean = retrieval_report.gallery_mean(audio, video, 25, draws=2,
                                         csls_k=5)
    expected = []
    for seed in (0, 1):
        rows = np.sort(np.random.default_rng(seed).choice(40, 25, replace=False))
        cos = _cos(audio[rows], video[rows])
        # CSLS with the hubness of each gallery video over this draw's
        # audio queries (the query's own term is a constant per row).
        hub = np.sort(cos, axis=0)[-5:].mean(0)
        csls = 2 * cos - hub[None, :]
        expected.append(np.mean(
            [(csls[i] >= csls[i, i]).sum() <= 10 for i in range(25)]))
    assert mean["audio_to_video"]["recall@10"] == pytest.approx(
        np.mean(expected))


def _documented_video_level_train_commands():
    """The `python train.py --noframe_features` commands of README.md and
    docs/*.md, as lists of arguments."""
    root = pathlib.Path(__file__).resolve().parents[1]
    commands = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = doc.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if line.strip().startswith("python train.py --noframe_features"):
                commands.append(shlex.split(line)[2:])
    return commands


def test_the_driver_trains_what_the_docs_document():
    """bench/video_level_results.py reruns the documented video-level flow:
    train.py with data flags only (the recipe), as the docs' command."""
    data_flags = {"--noframe_features", "--train_data_pattern",
                  "--validate_data_pattern", "--train_dir",
                  "--start_new_model"}
    commands = _documented_video_level_train_commands()
    recipe_runs = [c for c in commands
                   if {a.split("=")[0] for a in c} <= data_flags]
    assert recipe_runs, commands
    assert vlr.README_FLOW[1] == ()
    assert vlr.shard_pattern("/d", 0, 1) == (
        "/d/validate0000.tfrecord,/d/validate0001.tfrecord")


def test_gallery_draws_average_seeded_subsets():
    rng = np.random.default_rng(2)
    audio, video = rng.normal(size=(40, 6)), rng.normal(size=(40, 6))
    labels = [np.array([i % 3]) for i in range(40)]
    mean = retrieval_report.gallery_mean(audio, video, 25, labels,
                                         draws=2)
    expected = []
    for seed in (0, 1):
        rows = np.sort(np.random.default_rng(seed).choice(40, 25, replace=False))
        sims = _cos(audio[rows], video[rows])
        expected.append(np.mean(
            [(sims[i] >= sims[i, i]).sum() <= 10 for i in range(25)]))
    assert mean["num_queries"] == 25
    assert mean["audio_to_video"]["recall@10"] == pytest.approx(
        np.mean(expected))
    # A gallery as large as the set is the set itself, scored once.
    full = retrieval_report.gallery_mean(audio, video, 50, labels)
    assert full["num_draws"] == 1 and full["num_queries"] == 40
    sims = _cos(audio, video)
    assert full["video_to_audio"]["recall@10"] == pytest.approx(np.mean(
        [(sims[:, i] >= sims[i, i]).sum() <= 10 for i in range(40)]))
