"""CSLS ranking (metrics.csls_pair / cross_modal_metrics(csls_k=...))
against a direct numpy computation."""

import numpy as np
import pytest

from yt8m_xmodal import metrics


def _numpy_csls_ranks(queries, gallery, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    cos = q @ g.T
    r_q = np.sort(cos, axis=1)[:, -k:].mean(1)
    r_g = np.sort(cos, axis=0)[-k:, :].mean(0)
    csls = 2 * cos - r_q[:, None] - r_g[None, :]
    true = np.diag(csls)
    # Ties count against the query, as in metrics.py.
    return (csls >= true[:, None] - 1e-6).sum(1)


def test_csls_ranks_equal_a_direct_computation():
    rng = np.random.default_rng(0)
    audio = rng.normal(size=(60, 8))
    # A few hub videos near everything, which CSLS must push down.
    video = audio + rng.normal(scale=1.5, size=(60, 8))
    video[:5] = audio.mean(0) * 3 + rng.normal(scale=0.1, size=(5, 8))
    result = metrics.cross_modal_metrics(audio, video, top_k=(1, 5, 10),
                                         csls_k=5)
    for direction, (q, g) in (("audio_to_video", (audio, video)),
                              ("video_to_audio", (video, audio))):
        ranks = _numpy_csls_ranks(q, g, 5)
        for k in (1, 5, 10):
            assert result[direction][f"recall@{k}"] == pytest.approx(
                np.mean(ranks <= k))
        assert result[direction]["median_rank"] == pytest.approx(
            np.median(ranks))
    # Without csls_k the metrics are the plain cosine ones, which differ.
    plain = metrics.cross_modal_metrics(audio, video, top_k=(1, 5, 10))
    assert plain == metrics.cross_modal_metrics(audio, video, top_k=(1, 5, 10),
                                                csls_k=0)
    assert plain["audio_to_video"] != result["audio_to_video"]


def test_csls_k_must_be_positive():
    with pytest.raises(ValueError, match="csls_k"):
        metrics.csls_pair(np.eye(3), np.eye(3), k=0)
