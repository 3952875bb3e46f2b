"""Reliability, the fast sample: damaged shards through the reader, the
subset tool and evaluation; a non-finite loss and feature sizes that disagree
with the records, from the command line.

One mutant of each kind of damage (tests/reliability_cases.py), read beside
a good shard. A mutant gives a one-line DataError naming its file, or with
skip_corrupt is skipped and counted, or is a valid shorter shard read as it
is; whatever is yielded equals what the intact shard holds for those ids.
The randomized sweep over hundreds of mutants, kills and concurrent eval is
bench/stress_reliability.py (RELIABILITY.md has its table).
"""

import contextlib
import dataclasses
import faulthandler
import glob
import json
import sys

import numpy as np
import pytest
import tensorflow as tf

import reliability_cases as cases
from conftest import REPO_ROOT, TINY_FEATURE_SIZES
import prewarmed
from test_training import _parse_train_flags
from yt8m_xmodal import evaluation
from yt8m_xmodal import modeling
from yt8m_xmodal import subset
from yt8m_xmodal import training
from yt8m_xmodal.errors import DataError

# A read that takes longer than this is a hang: the watchdog ends the test
# process with the stack of every thread rather than letting it wait forever.
# Generous, since a loaded 2-core CI machine took over 60 s for an honest
# evaluation of the mutants.
READ_TIMEOUT_S = 240


@contextlib.contextmanager
def watchdog(seconds=READ_TIMEOUT_S):
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module", params=[True, False], ids=["frame", "video"])
def shards(request, tmp_path_factory):
    """The mutants of one level, the good shard and the intact records."""
    return _shards(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def frame_shards(tmp_path_factory):
    return _shards(True, tmp_path_factory)


def _shards(frame_features, tmp_path_factory):
    source, good, _, mutants = cases.make_mutants(
        str(tmp_path_factory.mktemp("mutants")), frame_features)
    intact = read(cases.reader(frame_features), f"{source},{good}",
                  frame_features)
    return Shards(frame_features, source, good,
                  {i for i in intact if "-good-" in i}, mutants, intact)


@dataclasses.dataclass
class Shards:
    frame_features: bool
    source: str
    good: str
    good_ids: set
    mutants: list
    intact: dict  # id -> {feature: array}, read from the intact shards


def read(reader, pattern, frame_features):
    """id -> {feature: array} of every record read, each with the reader's
    shapes; an id read twice fails the test."""
    records = {}
    dv, da = TINY_FEATURE_SIZES
    frames = (cases.MAX_FRAMES,) if frame_features else ()
    for batch in reader.batches(pattern, 5):
        assert batch["video"].shape[1:] == frames + (dv,)
        assert batch["audio"].shape[1:] == frames + (da,)
        assert batch["labels"].shape[1:] == (cases.NUM_CLASSES,)
        for row, vid in enumerate(batch["id"].numpy()):
            vid = vid.decode(errors="replace")
            assert vid not in records, f"{vid} read twice"
            records[vid] = {k: np.asarray(v)[row] for k, v in batch.items()
                            if k != "id"}
    return records


def assert_names_file(error, path):
    message = str(error)
    assert path in message and "\n" not in message, message


def assert_equal_to_intact(records, intact):
    for vid, arrays in records.items():
        assert vid in intact, f"read an id never written: {vid!r}"
        for key, value in arrays.items():
            np.testing.assert_array_equal(value, intact[vid][key],
                                          err_msg=f"{vid}: {key}")


def test_reader_strict(shards):
    for mutant in shards.mutants:
        pattern = f"{mutant.path},{shards.good}"
        reader = cases.reader(shards.frame_features)
        with watchdog():
            if mutant.valid:
                records = read(reader, pattern, shards.frame_features)
                assert set(records) == set(mutant.kept) | shards.good_ids
                assert_equal_to_intact(records, shards.intact)
                continue
            with pytest.raises(DataError) as raised:
                read(reader, pattern, shards.frame_features)
        assert_names_file(raised.value, mutant.path)


def test_reader_skip_corrupt(shards):
    for mutant in shards.mutants:
        pattern = f"{mutant.path},{shards.good}"
        reader = cases.reader(shards.frame_features, skip_corrupt=True)
        with watchdog():
            if mutant.kept is None:
                with pytest.raises(DataError) as raised:
                    read(reader, pattern, shards.frame_features)
                assert_names_file(raised.value, mutant.path)
                continue
            records = read(reader, pattern, shards.frame_features)
        assert set(records) == set(mutant.kept) | shards.good_ids, mutant.kind
        assert_equal_to_intact(records, shards.intact)
        skipped = sum(reader.skip_counts.values())
        assert (skipped == 0) == mutant.valid, (mutant.kind,
                                                reader.skip_counts)


def test_not_a_protobuf_error_names_the_record_without_its_bytes(shards):
    """TF quotes such a record's bytes in its error message (and, at video
    level, then fails to decode the message); the user gets the file and
    record index instead, in both modes."""
    (mutant,) = [m for m in shards.mutants if m.kind == "not_a_protobuf"]
    for skip_corrupt in (False, True):
        with pytest.raises(DataError) as raised:
            with watchdog():
                read(cases.reader(shards.frame_features, skip_corrupt),
                     f"{mutant.path},{shards.good}", shards.frame_features)
        assert_names_file(raised.value, f"{mutant.path}:{cases.DAMAGED}")
        assert "\\x86" not in str(raised.value)


# The kinds the subset tool and evaluation also get: a cut inside a record
# and inside a length header (which TFRecordDataset passes over quietly), a
# flipped byte, a CRC-valid record of the wrong size, and two valid shards.
TOOL_KINDS = ("cut_in_record", "cut_in_header", "flip_payload",
              "wrong_feature_size", "cut_at_boundary", "zero_length")


def _subset(pattern, out_dir, frame_features, skip_corrupt):
    manifest = subset.extract_subset(
        pattern, str(out_dir), frame_features=frame_features,
        feature_sizes=TINY_FEATURE_SIZES,
        selection=subset.build_selection(
            label_indices=list(range(cases.NUM_CLASSES))),
        min_frames=1, num_shards=1, skip_corrupt=skip_corrupt, progress=None)
    written = [bytes(r) for p in sorted(glob.glob(f"{out_dir}/*.tfrecord"))
               for r in tf.data.TFRecordDataset(p).as_numpy_iterator()]
    return manifest, written


def test_subset_tool_on_mutants(shards, tmp_path):
    originals = {bytes(r) for p in (shards.source, shards.good)
                 for r in tf.data.TFRecordDataset(p).as_numpy_iterator()}
    tested = 0
    for n, mutant in enumerate(m for m in shards.mutants
                               if m.kind in TOOL_KINDS):
        pattern = f"{mutant.path},{shards.good}"
        for skip_corrupt in (False, True):
            out_dir = tmp_path / f"{n}-{skip_corrupt}"
            tested += 1
            if not (mutant.valid or skip_corrupt):
                with pytest.raises(DataError) as raised:
                    _subset(pattern, out_dir, shards.frame_features, False)
                assert_names_file(raised.value, mutant.path)
                continue
            manifest, written = _subset(pattern, out_dir,
                                        shards.frame_features, skip_corrupt)
            assert set(written) <= originals, "a record never written"
            skipped = [s["file"] for s in manifest["skipped_files"]]
            # The subset keeps or drops whole files and counts every record
            # its rules drop.
            assert skipped == ([] if mutant.valid else [mutant.path])
            kept = len(shards.good_ids) + (len(mutant.kept) if mutant.valid
                                           else 0)
            assert len(written) + sum(manifest["dropped"].values()) == kept
    assert tested == 2 * len(TOOL_KINDS)


def test_evaluation_on_mutants(frame_shards, trained_dir):
    # The trained fixture reads frame-level records.
    shards = frame_shards
    for mutant in (m for m in shards.mutants if m.kind in TOOL_KINDS):
        for skip_corrupt in (False, True):
            with watchdog():
                try:
                    result = evaluation.evaluate_checkpoint(
                        str(trained_dir), f"{mutant.path},{shards.good}", (1,),
                        batch_size=8, skip_corrupt=skip_corrupt)
                except DataError as e:
                    assert not (mutant.valid or skip_corrupt), (mutant.kind, e)
                    assert_names_file(e, mutant.path)
                    continue
            assert mutant.valid or skip_corrupt, mutant.kind
            assert result["num_queries"] == (len(shards.good_ids)
                                             + len(mutant.kept))


def _run(script, *args, timeout=300):
    return prewarmed.run([sys.executable, str(REPO_ROOT / script), *args],
                         timeout=timeout, cwd=REPO_ROOT)


def _failed_with_one_line(out, script, named):
    """The script's error contract: exit non-zero, no traceback, and a last
    stderr line `<script>: error: ...` that names `named`."""
    last = (out.stderr.strip().splitlines() or [""])[-1]
    assert out.returncode not in (0, None), out.stdout[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert last.startswith(f"{script}: error:") and named in last, last


def _train_flags(data_dir, train_dir, max_steps, *extra):
    flags = dict(
        train_data_pattern=f"{data_dir}/train-*", train_dir=train_dir,
        model="MeanPoolModel", max_frames=cases.MAX_FRAMES,
        feature_sizes=",".join(map(str, TINY_FEATURE_SIZES)),
        num_classes=cases.NUM_CLASSES, embedding_dim=4, hidden_units=16,
        subspace_dim=2, batch_size=32, num_epochs=1000, max_steps=max_steps,
        export_model_steps=2, optimizer="sgd", clip_gradient_norm=0)
    return [f"--{k}={v}" for k, v in flags.items()] + list(extra)


def test_train_script_with_huge_learning_rate(tiny_frame_data, tmp_path):
    """From the command line: one error line and exit 1, no traceback; the
    checkpoint of an earlier good run is kept, readable and finite (no NaN
    update was applied, and a model whose embeddings overflow after a huge
    but finite update is not saved)."""
    train_dir = tmp_path / "run"
    # The earlier good run is set up in-process, from the same flags.
    first = training.train(_parse_train_flags(
        *_train_flags(tiny_frame_data, train_dir, 2)))
    assert first.step == 2
    # The same optimizer in both runs, so the rerun restores all of it.
    out = _run("train.py", *_train_flags(tiny_frame_data, train_dir, 10,
                                         "--base_learning_rate=1e30"))
    _failed_with_one_line(out, "train.py", "not finite")
    assert out.returncode == 1
    json.loads((train_dir / "model_flags.json").read_text())
    state = tf.train.get_checkpoint_state(str(train_dir))
    steps = [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths]
    assert 2 in steps and max(steps) < 10, steps
    for step in steps:
        _, model, subspace, restored = modeling.restore(
            str(train_dir), str(train_dir / f"ckpt-{step}"))
        assert restored == step
        assert all(np.all(np.isfinite(w.numpy()))
                   for w in model.weights + subspace.weights)


def test_train_script_feature_sizes_that_disagree_with_the_records(
        tiny_frame_data, tmp_path):
    out = _run("train.py", *_train_flags(tiny_frame_data, tmp_path / "run", 2,
                                         "--feature_sizes=32,8"))
    assert out.returncode == 2, out.stderr[-3000:]
    _failed_with_one_line(out, "train.py", "--feature_sizes")
    # The first record tells, before the pipeline is built.
    assert ("holds frame-level records (rgb 16, audio 8 bytes per frame); "
            "pass --feature_sizes=16,8") in out.stderr
