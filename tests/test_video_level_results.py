"""bench/video_level_results.py and the gallery scoring it uses, against
brute force."""

import os
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


def test_the_driver_runs_the_readme_commands():
    pattern = vlr.shard_pattern("/d", 0, 2)
    assert pattern == ("/d/validate0000.tfrecord,/d/validate0001.tfrecord,"
                       "/d/validate0002.tfrecord")
    # The README flow is train.py with no flag but the data's: the recipe.
    assert vlr.README_FLOW[1] == ()
    assert "--model=LinearCcaModel" in vlr.LINEAR_CCA[1]
    text = vlr.commands_text(None)
    assert "train.py --noframe_features" in text
    assert "inference.py" in text and "--embeddings_file" in text


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
