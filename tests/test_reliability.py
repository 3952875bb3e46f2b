"""Reliability (issue 9), the fast sample: corrupt shards through the reader,
the subset tool and evaluation; a non-finite loss from the command line; bad
flags that the other tests leave out.

The full sweep (hundreds of mutants, five kills, concurrent eval) is
bench/stress_reliability.py; RELIABILITY.md has its table. The per-mutant
checks are imported from there, so the test and the sweep apply the same rule:
a mutant gives a DataError naming its file, or (skip_corrupt) is skipped and
counted, or is a valid shorter shard read as it is; whatever is yielded equals
what the intact shard holds for those ids, with the contract's shapes.
"""

import collections
import contextlib
import faulthandler
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, TINY_FEATURE_SIZES
from yt8m_xmodal import evaluation
from yt8m_xmodal.tools import subset
from yt8m_xmodal.errors import DataError

sys.path.insert(0, str(REPO_ROOT / "bench"))
import stress_reliability as stress  # noqa: E402

# A mutant that takes longer than this is a hang: the watchdog ends the test
# process with the stack of every thread rather than letting it wait forever.
MUTANT_TIMEOUT_S = 60


@contextlib.contextmanager
def watchdog(seconds=MUTANT_TIMEOUT_S):
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def test_sizes_agree_with_the_trained_fixture():
    # check_eval reads the mutants with conftest's trained_dir model.
    assert stress.FEATURE_SIZES == TINY_FEATURE_SIZES


@pytest.fixture(scope="module")
def mutants(tmp_path_factory):
    """One mutant of each kind per level (11 frame, 12 video), and a good
    shard to read beside each."""
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(4)
    out = {}
    for frame_features in (True, False):
        source, good = stress.write_source_shards(str(root / "src"),
                                                  frame_features, seed=1)
        kinds = 11 if frame_features else 12
        jobs = stress.make_mutants(source, frame_features, kinds, rng,
                                   str(root / "mutants"))
        assert len({j["kind"] for j in jobs}) == kinds
        out[frame_features] = jobs, good
    return out


@pytest.mark.parametrize("frame_features", [True, False], ids=["frame", "video"])
def test_reader_on_every_kind_of_mutant(mutants, frame_features):
    jobs, good = mutants[frame_features]
    outcomes = collections.Counter()
    for job in jobs:
        for skip_corrupt in (False, True):
            with watchdog():
                outcome, note = stress.check_reader(job, good, skip_corrupt)
            assert outcome in stress.OK_OUTCOMES, (
                f"{job['kind']} ({job['path']}), skip_corrupt={skip_corrupt}: "
                f"{note}")
            outcomes[outcome, skip_corrupt] += 1
    # Only the zero-length file is a valid (empty) shard among these kinds;
    # every other mutant is an error in strict mode and a counted skip
    # (or a DataError for an unparseable record) with skip_corrupt.
    valid = sum(j["undetectable"] for j in jobs)
    assert valid == 1
    assert outcomes["clean", False] == outcomes["clean", True] == valid
    assert outcomes["error", False] == len(jobs) - valid
    # An unparseable record fails its batch's parse in both modes.
    assert outcomes["skipped", True] + outcomes["error", True] == len(jobs) - valid
    assert outcomes["skipped", True] >= len(jobs) - valid - 1


def test_subset_and_eval_on_mutants(mutants, trained_dir, tmp_path):
    jobs, good = mutants[True]
    for job in jobs:
        if job["kind"] not in ("flip_payload", "truncate", "truncate_header",
                               "wrong_feature_size", "zero_length"):
            continue
        for skip_corrupt in (False, True):
            with watchdog():
                subset_outcome, note = stress.check_subset(
                    job, good, skip_corrupt, str(tmp_path / "subset"))
            assert subset_outcome in stress.OK_OUTCOMES, (job["kind"], note)
            if job["kind"] != "truncate_header":
                with watchdog():
                    eval_outcome, note = stress.check_eval(
                        job, good, skip_corrupt, str(trained_dir))
                assert eval_outcome in stress.OK_OUTCOMES, (job["kind"], note)
                assert (eval_outcome == "clean") == job["undetectable"]


def _framed(path, records):
    with tf.io.TFRecordWriter(str(path)) as w:
        for record in records:
            w.write(record)


def test_video_level_record_that_is_not_a_protobuf(tmp_path):
    """TF quotes such a record's bytes in its error message and then fails to
    decode the message (UnicodeDecodeError); it must reach the user as a
    DataError, in both modes, without the record's bytes."""
    rng = np.random.default_rng(0)
    good = [stress.make_record(rng, f"v{i}", False).SerializeToString()
            for i in range(3)]
    path = tmp_path / "garbage.tfrecord"
    _framed(path, [good[0], b"\x86\xff\x12\x99\x01\x02", good[1], good[2]])
    for skip_corrupt in (False, True):
        with pytest.raises(DataError, match="not a protobuf") as raised:
            with watchdog():
                list(stress._reader(False, skip_corrupt).batches(str(path), 2))
        assert "\\x86" not in str(raised.value) and "\n" not in str(raised.value)


def test_video_level_record_that_is_not_a_protobuf_names_its_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "garbage.tfrecord"
    _framed(path, [stress.make_record(rng, "v0", False).SerializeToString(),
                   b"\x86\xff\x12\x99\x01\x02"])
    with pytest.raises(DataError, match=f"record {path}:1 is not a"):
        list(stress._reader(False, False).batches(str(path), 2))


def test_subset_sees_a_cut_inside_a_length_header(tmp_path):
    """TFRecordDataset ends quietly at a cut inside a record's 12 header
    bytes; the subset tool must not lose the records after it unnoticed."""
    source, good = stress.write_source_shards(str(tmp_path), True, seed=3)
    data = open(source, "rb").read()
    start, _ = stress.record_spans(data)[4]
    path = tmp_path / "cut.tfrecord"
    path.write_bytes(data[:start + 5])
    kwargs = dict(frame_features=True, feature_sizes=TINY_FEATURE_SIZES,
                  selection=subset.build_selection(label_indices=[0, 1, 2, 3]),
                  min_frames=1, num_shards=1, progress=None)
    with pytest.raises(DataError, match=f"{path}.*truncated or corrupt"):
        subset.extract_subset(f"{path},{good}", str(tmp_path / "a"), **kwargs)
    manifest = subset.extract_subset(f"{path},{good}", str(tmp_path / "b"),
                                     skip_corrupt=True, **kwargs)
    assert [s["file"] for s in manifest["skipped_files"]] == [str(path)]


def _run(script, *args, timeout=300):
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *args],
                          capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT)


def test_train_script_with_huge_learning_rate(tiny_frame_data, tmp_path):
    """From the command line: one error line and exit 1, no traceback; the
    checkpoints left are readable and finite (no NaN update was applied, and
    a model whose embeddings overflow after a huge but finite update is not
    saved)."""
    train_dir = tmp_path / "run"
    out = _run("train.py", *stress.train_args(
        tiny_frame_data, train_dir, 10, 1, "--base_learning_rate=1e30",
        "--optimizer=sgd", "--clip_gradient_norm=0"))
    assert stress.one_line_error(out, "train.py", "not finite"), out.stderr[-3000:]
    assert out.returncode == 1
    steps = stress.checkpoint_steps(str(train_dir))
    assert not steps or max(steps) < 10
    json.loads((train_dir / "model_flags.json").read_text())
    # A diverged model never becomes a checkpoint (usually the first huge
    # update already overflows, so there is none): whatever is left has
    # finite weights and a finite subspace.
    for step in steps:
        _, model, subspace, restored = evaluation.load_model(
            str(train_dir), str(train_dir / f"ckpt-{step}"))
        assert restored == step
        assert all(np.all(np.isfinite(w.numpy()))
                   for w in model.weights + subspace.weights)


def test_train_script_feature_sizes_that_disagree_with_the_records(
        tiny_frame_data, tmp_path):
    args = stress.train_args(tiny_frame_data, tmp_path / "run", 2, 2)
    args = [a for a in args if not a.startswith("--feature_sizes")]
    out = _run("train.py", *args, "--feature_sizes=32,8")
    assert out.returncode == 2, out.stderr[-3000:]
    assert stress.one_line_error(out, "train.py", "--feature_sizes")
    # The first record tells, before the pipeline is built.
    assert ("holds frame-level records (rgb 16, audio 8 bytes per frame); "
            "pass --feature_sizes=16,8") in out.stderr
