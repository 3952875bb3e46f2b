"""Score-level tricks of bench/video_level_results.py, against brute force."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench import retrieval_report  # noqa: E402
from bench import video_level_results as vlr  # noqa: E402
from yt8m_xmodal import metrics  # noqa: E402


def _cos(x, y):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return x @ y.T


def test_fuse_is_weighted_mean_of_cosines():
    rng = np.random.default_rng(0)
    first = (rng.normal(size=(7, 3)), rng.normal(size=(7, 3)))
    second = (rng.normal(size=(7, 5)), rng.normal(size=(7, 5)))
    weights = (1.0, 0.5)
    audio, video = vlr.fuse([first, second], weights)
    fused = _cos(audio.astype(np.float64), video.astype(np.float64))
    w2 = np.square(weights)
    expected = (w2[0] * _cos(*first) + w2[1] * _cos(*second)) / w2.sum()
    np.testing.assert_allclose(fused, expected, atol=1e-6)


def test_csls_dot_product_ranks_like_csls():
    rng = np.random.default_rng(1)
    audio, video = rng.normal(size=(9, 4)), rng.normal(size=(9, 4))
    bank_audio, bank_video = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    k = 3
    a, v = vlr.csls_embeddings(audio, video, bank_audio, bank_video, k=k)
    # CSLS by its definition, in float64.
    r_video = np.sort(_cos(video, bank_audio), axis=1)[:, -k:].mean(1)
    r_audio = np.sort(_cos(audio, bank_video), axis=1)[:, -k:].mean(1)
    csls = 2 * _cos(audio, video) - r_audio[:, None] - r_video[None, :]
    np.testing.assert_allclose(2 * (a.astype(np.float64) @ v.T.astype(
        np.float64)), csls, atol=1e-5)
    # Ranks from the metrics module (dot product) match CSLS ranks.
    ranks = metrics.true_pair_ranks(a, v, cosine=False)
    brute = [int((csls[i] >= csls[i, i]).sum()) for i in range(len(csls))]
    np.testing.assert_array_equal(np.asarray(ranks), brute)


def test_gallery_draws_average_seeded_subsets():
    rng = np.random.default_rng(2)
    audio, video = rng.normal(size=(40, 6)), rng.normal(size=(40, 6))
    labels = [np.array([i % 3]) for i in range(40)]
    mean = retrieval_report.gallery_mean(audio, video, 25, labels,
                                         seeds=(0, 1))
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
