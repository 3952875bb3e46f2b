"""Tests of the built-in demo data (yt8m_xmodal/tools/synthetic.py).

The main check is the promised property: on a small set, linear CCA on
mean-pooled features recovers clearly less of the pairing than the oracle,
and the same CCA on per-chunk means in order recovers clearly more than the
plain mean, so the temporal signal is in the written records. The CCA and the
oracle's Gaussian score are re-derived here in float64 numpy/scipy, not taken
from the module.
"""

import glob
import json
import os
import subprocess
import sys

from absl import flags
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from yt8m_xmodal import cli  # noqa: E402
from yt8m_xmodal import features  # noqa: E402
from yt8m_xmodal import metrics  # noqa: E402
from yt8m_xmodal.cli import synthetic as synthetic_cli  # noqa: E402
from yt8m_xmodal.tools import synthetic  # noqa: E402
from yt8m_xmodal.errors import ConfigError  # noqa: E402

SMALL_SIZES = (64, 32)
CHUNK_FRAMES = 30


def _parse_frame_split(directory, split, feature_sizes=SMALL_SIZES):
    """All records of a split as a list of dicts, parsed in the YT8M format."""
    paths = sorted(glob.glob(os.path.join(directory, f"{split}-*.tfrecord")))
    videos = []
    for serialized in tf.data.TFRecordDataset(paths).batch(256):
        context, lists, lengths = tf.io.parse_sequence_example(
            serialized, context_features=features.context_features(),
            sequence_features=features.frame_sequence_features())
        labels = tf.sparse.to_dense(context["labels"], default_value=-1)
        frames = {}
        for name, size in zip(features.FRAME_FEATURE_NAMES, feature_sizes):
            # Rows past a video's length are padding: drop them, decode the
            # rest of the batch at once.
            present = tf.sequence_mask(lengths[name])
            codes = tf.io.decode_raw(tf.boolean_mask(lists[name], present),
                                     tf.uint8)
            assert codes.shape[1] == size, (name, codes.shape)
            values = features.dequantize(codes).numpy().astype(np.float64)
            frames[name] = np.split(values,
                                    np.cumsum(lengths[name].numpy())[:-1])
        for i, video_id in enumerate(context["id"].numpy()):
            video = {"id": video_id.decode(),
                     "labels": [l for l in labels[i].numpy() if l >= 0]}
            for name in features.FRAME_FEATURE_NAMES:
                video[name] = frames[name][i]
            videos.append(video)
    return videos


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("synthetic"))
    info = synthetic.generate_dataset(
        directory, num_videos=1000, seed=3, num_shards=2,
        feature_sizes=SMALL_SIZES)
    splits = {split: _parse_frame_split(directory, split)
              for split in synthetic.SPLITS}
    return directory, info, splits


def test_dataset_json_describes_the_splits(small_set):
    directory, info, splits = small_set
    with open(os.path.join(directory, "dataset.json")) as f:
        on_disk = json.load(f)
    assert on_disk == json.loads(json.dumps(info))
    assert info["num_videos"] == {"train": 800, "validate": 100, "test": 100}
    assert info["generator_version"] == synthetic.GENERATOR_VERSION
    assert info["seed"] == 3
    assert info["feature_sizes"] == list(SMALL_SIZES)
    assert info["feature_names"] == ["rgb", "audio"]
    assert len(info["label_names"]) == info["num_classes"] == 8
    assert sorted(os.listdir(directory)) == sorted(
        ["dataset.json", "train-00000-of-00002.tfrecord",
         "train-00001-of-00002.tfrecord", "validate-00000-of-00001.tfrecord",
         "test-00000-of-00001.tfrecord"])
    for split, videos in splits.items():
        assert len(videos) == info["num_videos"][split]
        lengths = [len(v["rgb"]) for v in videos]
        assert info["num_frames"][split]["total"] == sum(lengths)
        assert info["num_frames"][split]["min"] == min(lengths)
        oracle = info["oracle"][split]
        assert oracle["gallery_size"] == len(videos)
        for direction in ("audio_to_video", "video_to_audio"):
            assert 0.0 < oracle[direction]["recall@1"] <= 1.0
            assert (oracle[direction]["recall@1"]
                    <= oracle[direction]["recall@10"])
    # The frame-count side channel is reported, and adding it to the oracle
    # can only help.
    test = info["oracle_with_frame_count"]["test"]["audio_to_video"]
    assert test["mrr"] >= info["oracle"]["test"]["audio_to_video"]["mrr"]


def test_records_are_real_yt8m_frame_examples(small_set):
    _, info, splits = small_set
    ids = set()
    for split, videos in splits.items():
        lengths = []
        for video in videos:
            assert len(video["rgb"]) == len(video["audio"])
            lengths.append(len(video["rgb"]))
            assert 1 <= len(video["labels"]) <= 2
            assert all(0 <= l < info["num_classes"] for l in video["labels"])
            ids.add(video["id"])
            # Mostly inside the quantizer's range: little clipping.
            for name in ("rgb", "audio"):
                clipped = np.mean(np.abs(video[name]) > 1.98)
                assert clipped < 0.01, (video["id"], name, clipped)
        assert min(lengths) >= synthetic.DEFAULT_MIN_FRAMES
        assert max(lengths) <= synthetic.DEFAULT_MAX_FRAMES
        # The full length and each shorter one occur (lengths vary).
        assert len(set(lengths)) == synthetic.NUM_SHORTER_LENGTHS + 1, set(lengths)
        assert synthetic.DEFAULT_MAX_FRAMES in lengths
    assert len(ids) == sum(info["num_videos"].values())
    # Every genre occurs in train.
    train_labels = {l for v in splits["train"] for l in v["labels"]}
    assert train_labels == set(range(info["num_classes"]))


def test_project_reader_reads_the_demo_format(small_set):
    from yt8m_xmodal import readers
    directory, info, splits = small_set
    reader = readers.YT8MFrameFeatureReader(
        feature_sizes=SMALL_SIZES, num_classes=info["num_classes"])
    batch = next(iter(reader.batches(
        os.path.join(directory, "test-*.tfrecord"), batch_size=100)))
    by_id = {v["id"]: v for v in splits["test"]}
    assert batch["video"].shape == (100, synthetic.DEFAULT_MAX_FRAMES, 64)
    for i, video_id in enumerate(batch["id"].numpy()):
        video = by_id[video_id.decode()]
        frames = int(batch["num_frames"][i])
        assert frames == len(video["rgb"])
        np.testing.assert_allclose(batch["video"][i, :frames], video["rgb"],
                                   atol=1e-6)
        np.testing.assert_allclose(batch["audio"][i, :frames],
                                   video["audio"], atol=1e-6)
        assert set(np.flatnonzero(batch["labels"][i])) == set(video["labels"])


def test_same_seed_gives_identical_shards(tmp_path):
    options = dict(num_videos=40, num_shards=2, feature_sizes=(16, 8),
                   max_frames=90)
    synthetic.generate_dataset(str(tmp_path / "a"), seed=5, **options)
    synthetic.generate_dataset(str(tmp_path / "b"), seed=5, **options)
    synthetic.generate_dataset(str(tmp_path / "c"), seed=6, **options)
    names = sorted(n for n in os.listdir(tmp_path / "a")
                   if n.endswith(".tfrecord"))
    assert len(names) == 4
    for name in names:
        a = (tmp_path / "a" / name).read_bytes()
        assert a == (tmp_path / "b" / name).read_bytes(), name
        assert a != (tmp_path / "c" / name).read_bytes(), name


def test_video_level_records_hold_the_frame_means(tmp_path):
    options = dict(num_videos=30, seed=7, num_shards=1, feature_sizes=(16, 8),
                   max_frames=90)
    synthetic.generate_dataset(str(tmp_path / "frames"), **options)
    info = synthetic.generate_dataset(str(tmp_path / "means"),
                                      frame_features=False, **options)
    assert info["feature_names"] == ["mean_rgb", "mean_audio"]
    frames = _parse_frame_split(str(tmp_path / "frames"), "train", (16, 8))
    paths = sorted(glob.glob(str(tmp_path / "means" / "train-*.tfrecord")))
    serialized = next(iter(tf.data.TFRecordDataset(paths).batch(100)))
    parsed = tf.io.parse_example(
        serialized, features.video_level_features(
            features.VIDEO_FEATURE_NAMES, (16, 8)))
    assert len(frames) == len(parsed["id"]) == 24
    for i, video in enumerate(frames):
        assert parsed["id"][i].numpy().decode() == video["id"]
        np.testing.assert_allclose(parsed["mean_rgb"][i].numpy(),
                                   video["rgb"].mean(0), atol=1e-5)
        np.testing.assert_allclose(parsed["mean_audio"][i].numpy(),
                                   video["audio"].mean(0), atol=1e-5)


def test_oracle_pair_score_is_the_gaussian_log_bayes_factor():
    rng = np.random.default_rng(0)
    noise = 1.2
    x = rng.standard_normal((3, 4)) * 1.5
    y = rng.standard_normal((5, 4)) * 1.5
    scores = synthetic._gaussian_pair_scores(x, y, noise)
    # Two views of z ~ N(0, 1) with independent N(0, noise^2) errors.
    var = 1.0 + noise ** 2
    joint = scipy.stats.multivariate_normal([0, 0], [[var, 1.0], [1.0, var]])
    marginal = scipy.stats.norm(0, np.sqrt(var))
    for i in range(3):
        for j in range(5):
            expected = sum(
                joint.logpdf([x[i, d], y[j, d]]) - marginal.logpdf(x[i, d])
                - marginal.logpdf(y[j, d]) for d in range(4))
            assert scores[i, j] == pytest.approx(expected, rel=1e-10)
    # Views missing from either side add nothing.
    xs = x[:, None, :].repeat(2, axis=1)
    ys = y[:, None, :].repeat(2, axis=1)
    x_mask = np.array([[1, 0]] * 3, bool)
    y_mask = np.array([[1, 1]] * 5, bool)
    np.testing.assert_allclose(
        synthetic._gaussian_pair_scores(xs, ys, noise, x_mask, y_mask), scores)


def _full_matrix_metrics(scores):
    """Metrics of the diagonal of a [N, N] score matrix, rows as queries, in
    numpy: a tie with the true match counts against it."""
    ranks = np.sum(scores >= np.diag(scores)[:, None], axis=1)
    return metrics.rank_metrics(ranks, synthetic.RECALL_KS)


def test_retrieval_metrics_by_hand():
    scores = np.array([[0.9, 0.1, 0.5],
                       [0.8, 0.2, 0.3],
                       [0.1, 0.2, 0.7]])
    # True matches rank 1, 3 and 1, also scored in blocks of 2 queries.
    ranks = metrics.true_pair_ranks_of_scores(
        lambda start, stop: scores[start:stop], 3, chunk_size=2)
    assert ranks.tolist() == [1, 3, 1]
    # A tie with the true match counts against it; -inf ranks last.
    tied = np.array([[0.5, 0.5, -np.inf], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0]])
    assert metrics.true_pair_ranks_of_scores(
        lambda start, stop: tied[start:stop], 3).tolist() == [2, 2, 3]
    result = _full_matrix_metrics(scores)
    assert result == metrics.rank_metrics(ranks, synthetic.RECALL_KS)
    assert result["recall@1"] == pytest.approx(2 / 3)
    assert result["recall@5"] == 1.0
    assert result["median_rank"] == 1.0
    assert result["mrr"] == pytest.approx((1 + 1 / 3 + 1) / 3)


def test_blockwise_oracle_metrics_match_the_full_matrix(monkeypatch):
    rng = np.random.default_rng(1)
    num, sections = 37, 5
    lengths = rng.choice([60, 80, 100], num)
    shared_style = rng.standard_normal((num, synthetic.STYLE_DIM))
    shared_sections = rng.standard_normal(
        (num, sections, synthetic.SECTION_DIM))
    views = {}
    for modality in ("audio", "video"):
        views[modality] = {
            "style": shared_style + synthetic.STYLE_VIEW_NOISE
            * rng.standard_normal(shared_style.shape),
            "sections": shared_sections + synthetic.SECTION_VIEW_NOISE
            * rng.standard_normal(shared_sections.shape),
            "shown": rng.random((num, sections)) < 0.7,
            "num_frames": lengths}
    full = synthetic.oracle_scores(views["audio"], views["video"])
    np.testing.assert_allclose(
        synthetic.oracle_scores(views["video"], views["audio"]), full.T,
        rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(synthetic, "_QUERY_BLOCK", 8)
    result = synthetic.both_directions(
        synthetic._oracle_rows, views["audio"], views["video"], num)
    assert result["audio_to_video"] == _full_matrix_metrics(full)
    assert result["video_to_audio"] == _full_matrix_metrics(full.T)
    # Among equal lengths only: other lengths rank last.
    same = lengths[:, None] == lengths[None, :]
    restricted = synthetic.both_directions(
        synthetic._oracle_rows_same_length, views["audio"], views["video"],
        num)
    assert restricted["audio_to_video"] == _full_matrix_metrics(
        np.where(same, full, -np.inf))


def test_frame_count_only_metrics_by_hand():
    result = synthetic.frame_count_only_metrics(np.array([60, 60, 80, 60]))
    # Three videos share 60 frames (true match uniform on ranks 1..3), one
    # is alone.
    a2v = result["audio_to_video"]
    assert a2v["recall@1"] == pytest.approx((3 * (1 / 3) + 1) / 4)
    assert a2v["recall@5"] == 1.0
    assert a2v["mrr"] == pytest.approx((3 * (1 + 1 / 2 + 1 / 3) / 3 + 1) / 4)
    assert a2v["median_rank"] == 2.0
    assert result["video_to_audio"] == a2v


def _cca_problem(audio, video, ridge):
    """The two float64 matrices of regularized CCA's generalized symmetric
    eigenproblem: [0 Cav; Cva 0] and [Caa + rI, 0; 0, Cvv + rI], with each
    ridge relative to its view's mean variance."""
    joint = np.concatenate([audio - audio.mean(0), video - video.mean(0)], 1)
    da = audio.shape[1]
    cov = joint.T @ joint / (len(joint) - 1)
    off = np.zeros_like(cov)
    off[:da, da:] = cov[:da, da:]
    off[da:, :da] = cov[da:, :da]
    block = np.zeros_like(cov)
    for part in (slice(0, da), slice(da, None)):
        sub = cov[part, part]
        block[part, part] = sub + ridge * np.trace(sub) / len(sub) * np.eye(
            len(sub))
    return off, block


def _fit_cca(audio, video, ridge):
    """Regularized linear CCA in float64, solved as the generalized symmetric
    eigenproblem [0 Cav; Cva 0] w = rho [Caa + rI, 0; 0, Cvv + rI] w.

    Returns (mean_audio, mean_video, audio projection, video projection),
    components by decreasing correlation.
    """
    mean_a, mean_v = audio.mean(0), video.mean(0)
    off, block = _cca_problem(audio, video, ridge)
    da = audio.shape[1]
    corrs, vectors = scipy.linalg.eigh(off, block)
    # Eigenvalues come in +-rho pairs: largest first keeps the positive half.
    vectors = vectors[:, np.argsort(-corrs)]
    return mean_a, mean_v, vectors[:da], vectors[da:]


def _retrieval(audio_embeddings, video_embeddings):
    """Audio->video {"recall@1", "recall@10", "median_rank", "mrr"}, cosine."""
    a = audio_embeddings / np.linalg.norm(audio_embeddings, axis=1,
                                          keepdims=True)
    v = video_embeddings / np.linalg.norm(video_embeddings, axis=1,
                                          keepdims=True)
    scores = a @ v.T
    # Rank of the true match; ties count against it.
    ranks = np.sum(scores >= np.diag(scores)[:, None], axis=1)
    return {"recall@1": np.mean(ranks <= 1), "recall@10": np.mean(ranks <= 10),
            "median_rank": np.median(ranks), "mrr": np.mean(1.0 / ranks)}


def _cca_retrieval(train, validate, test, embed):
    """Fits CCA on train pairs, picks ridge and size on validate MRR.

    `train` is (audio [N, Da], video [N, Dv]) rows to fit on; `validate` and
    `test` are whatever `embed(model, k, split)` turns into
    (audio [M, E], video [M, E]) embeddings.
    """
    best = None
    for ridge in (1e-2, 1e-1, 1.0):
        model = _fit_cca(*train, ridge)
        for k in (4, 8, 16, 32):
            mrr = _retrieval(*embed(model, k, validate))["mrr"]
            if best is None or mrr > best[0]:
                best = (mrr, model, k)
    return _retrieval(*embed(best[1], best[2], test))


def _mean_features(videos):
    return (np.stack([v["audio"].mean(0) for v in videos]),
            np.stack([v["rgb"].mean(0) for v in videos]))


def _embed_means(model, k, means):
    mean_a, mean_v, proj_a, proj_v = model
    return ((means[0] - mean_a) @ proj_a[:, :k],
            (means[1] - mean_v) @ proj_v[:, :k])


def _chunk_features(videos, max_frames=synthetic.DEFAULT_MAX_FRAMES):
    """{name: (chunk means in order [N, chunks, D], present [N, chunks])}."""
    num_chunks = -(-max_frames // CHUNK_FRAMES)
    out = {}
    for name in ("audio", "rgb"):
        chunks = np.zeros((len(videos), num_chunks, videos[0][name].shape[1]))
        present = np.zeros((len(videos), num_chunks), bool)
        for i, video in enumerate(videos):
            frames = video[name]
            for c in range(-(-len(frames) // CHUNK_FRAMES)):
                chunks[i, c] = frames[c * CHUNK_FRAMES:
                                      (c + 1) * CHUNK_FRAMES].mean(0)
                present[i, c] = True
        out[name] = (chunks, present)
    return out


def _embed_chunks(model, k, chunk_features):
    """The same CCA projection on every chunk, normalized, kept in order.

    A linear model of time with weights tied across chunks: chunk c of the
    audio meets chunk c of the video in the cosine; missing chunks are zero.
    """
    mean_a, mean_v, proj_a, proj_v = model
    embeddings = []
    for name, mean, proj in (("audio", mean_a, proj_a),
                             ("rgb", mean_v, proj_v)):
        chunks, present = chunk_features[name]
        e = (chunks - mean) @ proj[:, :k]
        e /= np.linalg.norm(e, axis=-1, keepdims=True)
        embeddings.append((e * present[..., None]).reshape(len(chunks), -1))
    return embeddings


def test_time_carries_pairing_that_the_mean_misses(small_set):
    _, info, splits = small_set
    oracle = info["oracle"]["test"]["audio_to_video"]
    means = {s: _mean_features(splits[s]) for s in synthetic.SPLITS}
    mean = _cca_retrieval(
        means["train"], means["validate"], means["test"], _embed_means)
    chunks = {s: _chunk_features(splits[s]) for s in synthetic.SPLITS}
    # Fit on the aligned (audio chunk c, video chunk c) pairs of train.
    both = chunks["train"]["audio"][1] & chunks["train"]["rgb"][1]
    train_pairs = (chunks["train"]["audio"][0][both],
                   chunks["train"]["rgb"][0][both])
    chunk = _cca_retrieval(
        train_pairs, chunks["validate"], chunks["test"], _embed_chunks)
    print(f"\ntest audio->video, gallery {len(splits['test'])}, "
          "R@1 / R@10 / median rank / MRR:")
    for name, result in (("mean CCA", mean), ("chunk CCA", chunk),
                         ("oracle", oracle)):
        print(f"  {name:10s} {result['recall@1']:.3f} / "
              f"{result['recall@10']:.3f} / {result['median_rank']:g} / "
              f"{result['mrr']:.3f}")
    # Mean pooling recovers only part of the pairing...
    assert mean["recall@10"] < oracle["recall@10"] - 0.3
    assert mean["mrr"] < oracle["mrr"] / 3
    # ...reading chunks in order recovers clearly more...
    assert chunk["mrr"] > 1.5 * mean["mrr"]
    assert chunk["recall@1"] > 2 * mean["recall@1"]
    assert chunk["recall@10"] > mean["recall@10"]
    assert chunk["median_rank"] < mean["median_rank"]
    # ...and the oracle stays the ceiling.
    assert chunk["mrr"] < oracle["mrr"]
    assert chunk["recall@10"] < oracle["recall@10"]


def test_bad_options_name_the_argument(tmp_path):
    with pytest.raises(ConfigError, match=r"^min_frames=200 and max_frames=100 "
                                          r"need 1 <= min_frames <= max_frames"):
        synthetic.generate_dataset(str(tmp_path), num_videos=40,
                                   min_frames=200, max_frames=100)
    with pytest.raises(ConfigError, match=r"^num_videos=3 must be at least 30"):
        synthetic.generate_dataset(str(tmp_path), num_videos=3)
    with pytest.raises(ConfigError, match=r"^num_shards=0 must be >= 1"):
        synthetic.generate_dataset(str(tmp_path), num_videos=40, num_shards=0)
    assert not os.listdir(tmp_path)


def _run_cli(*argv):
    flag_values = flags.FlagValues()
    synthetic_cli.define_flags(flag_values)
    flag_values(["synthetic", *argv])
    return synthetic_cli.run_from_flags(flag_values)


@pytest.mark.parametrize("argv, message", [
    (["--num_videos=40", "--min_frames=200", "--max_frames=100"],
     "--min_frames=200 and --max_frames=100 need 1 <= min_frames <= "
     "max_frames"),
    (["--num_shards=0"], "--num_shards=0 must be >= 1"),
    (["--num_classes=1"], "--num_classes=1 must be >= 2"),
])
def test_command_line_errors_name_the_flags(tmp_path, argv, message):
    with pytest.raises(ConfigError) as info:
        _run_cli(f"--output_dir={tmp_path}", *argv)
    # As cli.run prints it.
    assert cli.flag_message(info.value) == message


def test_command_line_writes_the_set(tmp_path):
    with pytest.raises(ConfigError) as info:
        _run_cli("--num_videos=40")
    assert cli.flag_message(info.value) == "--output_dir is required"
    info = _run_cli(f"--output_dir={tmp_path / 'out'}", "--num_videos=30",
                    "--num_shards=1", "--feature_sizes=16,8",
                    "--max_frames=60", "--noframe_features")
    assert info["feature_names"] == ["mean_rgb", "mean_audio"]
    assert info["frame_features"] is False
    result = subprocess.run(
        [sys.executable, "-m", "yt8m_xmodal.cli.synthetic",
         f"--output_dir={tmp_path / 'x'}", "--num_videos=3"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "error: --num_videos=3 must be at least 30" in result.stderr
    assert "Traceback" not in result.stderr


def test_ensure_demo_data_generates_once(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "DEMO_OPTIONS", dict(
        num_videos=30, seed=0, num_shards=1, feature_sizes=(16, 8),
        max_frames=60))
    monkeypatch.setenv(synthetic.CACHE_ENV, str(tmp_path / "cache"))
    # A crash left a half-written set behind: no dataset.json.
    stale = tmp_path / "cache" / synthetic.DEMO_NAME
    stale.mkdir(parents=True)
    (stale / "train-00000-of-00001.tfrecord").write_bytes(b"half")
    path = synthetic.ensure_demo_data()
    assert path == str(stale)
    assert sorted(os.listdir(tmp_path / "cache")) == [synthetic.DEMO_NAME]
    with open(os.path.join(path, "dataset.json")) as f:
        assert json.load(f)["num_videos"]["train"] == 24
    first = os.stat(os.path.join(path, "dataset.json")).st_mtime_ns
    # Cached: not generated again.
    assert synthetic.ensure_demo_data() == path
    assert os.stat(os.path.join(path, "dataset.json")).st_mtime_ns == first
    # An explicit cache dir wins over the environment.
    other = synthetic.ensure_demo_data(str(tmp_path / "other"))
    assert other == str(tmp_path / "other" / synthetic.DEMO_NAME)
