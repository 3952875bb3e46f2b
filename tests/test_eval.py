"""eval.py: metrics of a trained train_dir, the watcher, and bad input."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, TINY_FEATURE_SIZES, checkpoint_embeddings
import prewarmed
from yt8m_xmodal import evaluation
from yt8m_xmodal import modeling
from yt8m_xmodal import readers
from yt8m_xmodal import rundir
from yt8m_xmodal import writers
from yt8m_xmodal.errors import ConfigError, DataError


def run_script(*args, timeout=180):
    return prewarmed.run([sys.executable, *map(str, args)], timeout=timeout)


def brute_force_ranks(queries, gallery):
    """Independent reference: full cosine matrix and a full argsort."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    scores = q.astype(np.float64) @ g.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")
    return 1 + np.argmax(order == np.arange(len(q))[:, None], axis=1)


def test_run_once_writes_metrics_json_and_tensorboard(trained_dir, tiny_frame_data,
                                                      tmp_path):
    out = run_script(REPO_ROOT / "eval.py", f"--train_dir={trained_dir}",
                     f"--eval_data_pattern={tiny_frame_data}/validate-*",
                     "--top_k", "1,5,10", "--run_once", "--compute_map",
                     f"--output_json={tmp_path}/m.json")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["step"] == 4
    assert result["num_queries"] == 16
    for direction in ("audio_to_video", "video_to_audio"):
        assert set(result[direction]) >= {"recall@1", "recall@5", "recall@10",
                                          "median_rank", "mean_rank", "mrr", "map"}
    # Without --compute_map the same run leaves the O(N^2 log N) mAP out.
    cheap = evaluation.evaluate_checkpoint(
        str(trained_dir), f"{tiny_frame_data}/validate-*", (1, 5, 10))
    for direction in ("audio_to_video", "video_to_audio"):
        assert "map" not in cheap[direction]
        for key in ("recall@1", "recall@10", "mrr", "median_rank"):
            assert cheap[direction][key] == pytest.approx(
                result[direction][key], abs=1e-6)
    assert "16 queries" in out.stdout
    events = [f for f in os.listdir(trained_dir / "eval") if "tfevents" in f]
    assert events


def test_eval_metrics_agree_with_brute_force(trained_dir, tiny_frame_data):
    result = evaluation.evaluate_checkpoint(
        str(trained_dir), f"{tiny_frame_data}/validate-*", (1, 5, 10))
    emb = checkpoint_embeddings(trained_dir, f"{tiny_frame_data}/validate-*",
                                batch_size=7)
    ranks = brute_force_ranks(emb.audio, emb.video)
    a2v = result["audio_to_video"]
    assert a2v["recall@5"] == pytest.approx(np.mean(ranks <= 5))
    assert a2v["mean_rank"] == pytest.approx(ranks.mean())
    assert a2v["median_rank"] == pytest.approx(np.median(ranks))
    assert a2v["mrr"] == pytest.approx(np.mean(1.0 / ranks))


def test_raw_embeddings_are_scored_without_the_subspace(trained_dir,
                                                         tiny_frame_data):
    pattern = f"{tiny_frame_data}/validate-*"
    raw = evaluation.evaluate_checkpoint(str(trained_dir), pattern, (1, 5),
                                         use_subspace=False)
    _, model, _, _ = modeling.restore(str(trained_dir))
    reader = readers.reader_for(rundir.read_model_flags(
        str(trained_dir)).data)
    emb = evaluation.embed_dataset(model, reader.batches(pattern, 7))
    assert emb.audio.shape[1] == 4  # the towers' embedding, not the subspace
    ranks = brute_force_ranks(emb.audio, emb.video)
    assert raw["audio_to_video"]["recall@5"] == pytest.approx(
        np.mean(ranks <= 5))
    assert raw["audio_to_video"]["mean_rank"] == pytest.approx(ranks.mean())


def test_fixed_size_galleries_average_seeded_draws(trained_dir,
                                                   tiny_frame_data):
    pattern = f"{tiny_frame_data}/validate-*"
    result = evaluation.evaluate_checkpoint(
        str(trained_dir), pattern, (1, 5), gallery_size=10, gallery_draws=3)
    emb = checkpoint_embeddings(trained_dir, pattern, batch_size=7)
    # The draws are over the videos sorted by id.
    order = np.argsort(np.asarray(emb.ids).astype(str), kind="stable")
    recalls = []
    for seed in range(3):
        rows = order[np.sort(np.random.default_rng(seed).choice(
            len(emb.audio), 10, replace=False))]
        ranks = brute_force_ranks(emb.audio[rows], emb.video[rows])
        recalls.append(np.mean(ranks <= 5))
    a2v = result["audio_to_video"]
    assert (result["num_queries"], result["num_draws"]) == (10, 3)
    assert a2v["recall@5"] == pytest.approx(np.mean(recalls))
    assert a2v["recall@5_std"] == pytest.approx(np.std(recalls))
    table = evaluation.format_table(result)
    assert "mean over 3 seeded galleries of 10 videos" in table
    assert f"±{np.std(recalls):.4f}" in table


def test_watcher_evaluates_each_new_checkpoint_once(trained_dir, tmp_path):
    train_dir = tmp_path / "watched"
    shutil.copytree(trained_dir, train_dir)
    state = tf.train.get_checkpoint_state(str(train_dir))
    paths = list(state.all_model_checkpoint_paths)
    assert len(paths) == 2
    # Start with only the first checkpoint published; the trainer "writes" the
    # second one while the watcher sleeps.
    tf.compat.v1.train.update_checkpoint_state(str(train_dir), paths[0], paths[:1])
    evaluated, sleeps = [], []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            tf.compat.v1.train.update_checkpoint_state(str(train_dir), paths[1], paths)

    count = evaluation.watch_checkpoints(
        str(train_dir), evaluated.append, poll_seconds=7, max_evaluations=2,
        sleep=sleep)
    assert count == 2
    assert evaluated == paths
    # It slept between polls (no busy loop) and never re-evaluated paths[0].
    assert sleeps == [7, 7]


def test_checkpoint_removed_while_watching_is_passed_over(trained_dir, tmp_path,
                                                          tiny_frame_data):
    """max_to_keep deletes the checkpoint between the look and the read."""
    train_dir = tmp_path / "pruned"
    shutil.copytree(trained_dir, train_dir)
    attempts = []

    def evaluate(path):
        attempts.append(path)
        for name in os.listdir(train_dir):
            if name.startswith(os.path.basename(path) + "."):
                os.remove(train_dir / name)
        evaluation.evaluate_checkpoint(
            str(train_dir), f"{tiny_frame_data}/validate-*", (1,),
            checkpoint_path=path)

    def sleep(seconds):
        raise KeyboardInterrupt  # the user's Ctrl-C ends the watch

    with pytest.raises(KeyboardInterrupt):
        evaluation.watch_checkpoints(str(train_dir), evaluate, sleep=sleep)
    assert len(attempts) == 1


def test_missing_or_foreign_train_dir_names_it(tmp_path, trained_dir,
                                                tiny_frame_data):
    with pytest.raises(ConfigError, match="train_dir=.*nope does not exist"):
        modeling.restore(str(tmp_path / "nope"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ConfigError, match="model_flags.json"):
        modeling.restore(str(tmp_path / "empty"))
    # model_flags.json of another model beside this checkpoint.
    other = tmp_path / "other"
    shutil.copytree(trained_dir, other)
    config = rundir.read_model_flags(str(other)).replace(
        model="FrameLstmModel",
        model_config={"embedding_dim": 4, "rnn_units": 8, "hidden_units": 16})
    rundir.write_model_flags(str(other), config)
    with pytest.raises(ConfigError, match="does not match"):
        modeling.restore(str(other))


def test_empty_eval_set_is_a_data_error(trained_dir, tmp_path):
    empty = tmp_path / "empty.tfrecord"
    with tf.io.TFRecordWriter(str(empty)):
        pass
    with pytest.raises(DataError, match="empty"):
        evaluation.evaluate_checkpoint(str(trained_dir), str(empty), (1,))


def test_video_missing_one_modality_is_named(trained_dir, tmp_path):
    path = tmp_path / "one_view.tfrecord"
    rng = np.random.default_rng(0)
    video_size, audio_size = TINY_FEATURE_SIZES
    with tf.io.TFRecordWriter(str(path)) as w:
        for i in range(3):
            example = writers.make_frame_example(
                f"v{i}", [1], rng.normal(size=(12, video_size)),
                rng.normal(size=(12, audio_size)))
            if i == 1:
                del example.feature_lists.feature_list["audio"]
            w.write(example.SerializeToString())
    with pytest.raises(DataError, match="v1"):
        evaluation.evaluate_checkpoint(str(trained_dir), str(path), (1,))


@pytest.mark.parametrize("args, named", [
    (["--train_dir=/nonexistent/run"], "--train_dir=/nonexistent/run"),
    (["--top_k=0"], "--top_k"),
    (["--top_k=-3"], "--top_k"),
    (["--top_k=ten"], "--top_k"),
    (["--output_json=/nonexistent/dir/m.json"], "--output_json"),
])
def test_eval_script_bad_flags_give_one_line(trained_dir, tiny_frame_data, args,
                                             named):
    base = {"--train_dir": f"--train_dir={trained_dir}"}
    for a in args:
        base[a.split("=")[0]] = a
    out = run_script(REPO_ROOT / "eval.py", *base.values(), "--run_once",
                     f"--eval_data_pattern={tiny_frame_data}/validate-*")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("eval.py: error:") and named in last
