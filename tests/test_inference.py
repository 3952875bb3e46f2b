"""inference.py: top-K CSV, embeddings npz, and model bundles."""

import csv
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, checkpoint_embeddings
import prewarmed
from yt8m_xmodal import metrics


def run_inference(*args):
    out = prewarmed.run(
        [sys.executable, str(REPO_ROOT / "inference.py"), *map(str, args)],
        timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def inference_outputs(trained_dir, tiny_frame_data, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("inference")
    run_inference(f"--train_dir={trained_dir}",
                  f"--input_data_pattern={tiny_frame_data}/validate-*",
                  f"--output_file={out_dir}/matches.csv", "--top_k=5",
                  f"--embeddings_file={out_dir}/emb.npz",
                  f"--output_model_tgz={out_dir}/model.tgz")
    return out_dir


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_embeddings_npz_contract(inference_outputs):
    emb = np.load(inference_outputs / "emb.npz")
    assert set(emb.files) == {"ids", "audio", "video", "model_fingerprint"}
    n = len(emb["ids"])
    assert n == 16 and emb["ids"].dtype.kind == "U"
    assert emb["audio"].shape == emb["video"].shape == (n, 2)
    assert emb["audio"].dtype == emb["video"].dtype == np.float32


def test_savedmodel_embeddings_equal_checkpoint_embeddings(
        inference_outputs, trained_dir, tiny_frame_data):
    """The serving SavedModel and the checkpoint + reader path agree."""
    npz = np.load(inference_outputs / "emb.npz")
    emb = checkpoint_embeddings(trained_dir, f"{tiny_frame_data}/validate-*",
                                batch_size=5)
    order = {video_id: i for i, video_id in enumerate(emb.ids)}
    rows = [order[i] for i in npz["ids"]]
    np.testing.assert_allclose(npz["audio"], emb.audio[rows], atol=1e-5)
    np.testing.assert_allclose(npz["video"], emb.video[rows], atol=1e-5)


def test_csv_matches_agree_with_metrics_ranks(inference_outputs):
    header, rows = read_csv(inference_outputs / "matches.csv")
    assert header == ["QueryId", "QueryModality", "MatchScorePairs"]
    emb = np.load(inference_outputs / "emb.npz")
    ids = list(emb["ids"])
    assert len(rows) == 2 * len(ids)
    ranks = {
        "audio": metrics.true_pair_ranks(emb["audio"], emb["video"]),
        "video": metrics.true_pair_ranks(emb["video"], emb["audio"]),
    }
    for query_id, modality, pairs in rows:
        tokens = pairs.split()
        match_ids, scores = tokens[0::2], np.asarray(tokens[1::2], float)
        assert len(match_ids) == 5 and set(match_ids) <= set(ids)
        assert np.all(np.diff(scores) <= 1e-6), "scores must be best first"
        i = ids.index(query_id)
        rank = ranks[modality][i]
        if query_id in match_ids:
            assert match_ids.index(query_id) + 1 <= rank
        else:
            assert rank > 5
        # The best score is the largest cosine similarity, by numpy.
        other = "video" if modality == "audio" else "audio"
        q = emb[modality][i] / np.linalg.norm(emb[modality][i])
        g = emb[other] / np.linalg.norm(emb[other], axis=1, keepdims=True)
        assert scores[0] == pytest.approx(np.max(g @ q), abs=1e-5)


def test_bundle_reproduces_embeddings_in_a_fresh_process(
        inference_outputs, tiny_frame_data, tmp_path):
    run_inference(f"--input_model_tgz={inference_outputs}/model.tgz",
                  "--train_dir=/nonexistent",
                  f"--input_data_pattern={tiny_frame_data}/validate-*",
                  f"--embeddings_file={tmp_path}/again.npz")
    first = np.load(inference_outputs / "emb.npz")
    again = np.load(tmp_path / "again.npz")
    for name in ("ids", "audio", "video"):
        np.testing.assert_array_equal(first[name], again[name])


def test_query_one_modality_against_another_gallery(
        trained_dir, tiny_frame_data, tmp_path, inference_outputs):
    run_inference(f"--train_dir={trained_dir}",
                  f"--input_data_pattern={tiny_frame_data}/test-*",
                  f"--gallery_data_pattern={tiny_frame_data}/validate-*",
                  "--query_modality=audio", "--top_k=3",
                  f"--output_file={tmp_path}/m.csv")
    _, rows = read_csv(tmp_path / "m.csv")
    assert len(rows) == 16 and {r[1] for r in rows} == {"audio"}
    validate_ids = set(np.load(inference_outputs / "emb.npz")["ids"])
    for _, _, pairs in rows:
        assert set(pairs.split()[0::2]) <= validate_ids
