"""Tests of the Apache Beam pipelines (yt8m_xmodal/pipelines/) against the
single-process implementations they scale out: the subset tool
(yt8m_xmodal/subset/) and inference's embeddings (inference.py)."""

import collections
import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import DATA_DIR, REPO_ROOT, TINY_FEATURE_SIZES
from yt8m_xmodal import embeddings
from yt8m_xmodal import inference
from yt8m_xmodal import modeling
from yt8m_xmodal import pipelines
from yt8m_xmodal import subset
from yt8m_xmodal.pipelines import embed as embed_pipeline
from yt8m_xmodal.pipelines import subset as subset_pipeline

REAL_NUM_SHARDS = 4
# The run's own records are compared; keys naming the command differ.
_TOOL_ONLY_KEYS = ("tool",)


def _outputs(output_dir, frame_level):
    """{(split, id, record bytes)} of a subset's shards."""
    out = set()
    for path in glob.glob(os.path.join(str(output_dir), "*.tfrecord")):
        split = os.path.basename(path).split("-")[0]
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            proto = (tf.train.SequenceExample.FromString(raw).context
                     if frame_level else
                     tf.train.Example.FromString(raw).features)
            out.add((split, proto.feature["id"].bytes_list.value[0], raw))
    return out


def _comparable(manifest):
    return {k: v for k, v in manifest.items() if k not in _TOOL_ONLY_KEYS}


def _real_pattern():
    directory = DATA_DIR / "video"
    if not (directory / "validate0000.tfrecord").exists():
        pytest.skip(f"real YT8M shards not found at {directory}")
    return str(directory / "validate*.tfrecord")


@pytest.fixture(scope="module")
def tool_on_real_shards(tmp_path_factory):
    """The single-process tool on the 100 real video-level shards, once."""
    pattern = _real_pattern()
    out = tmp_path_factory.mktemp("tool_real")
    manifest = subset.extract_subset(
        pattern, str(out), frame_features=False, num_shards=REAL_NUM_SHARDS,
        progress=None)
    return pattern, manifest, _outputs(out, frame_level=False), out


@pytest.mark.parametrize("runner_args", [
    [],
    ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
], ids=["in_memory", "multi_processing_2"])
def test_subset_pipeline_equals_the_tool_on_real_shards(
        tool_on_real_shards, tmp_path, runner_args):
    pattern, tool_manifest, tool_records, _ = tool_on_real_shards
    manifest = subset_pipeline.run([
        f"--input_data_pattern={pattern}", f"--output_dir={tmp_path}",
        "--noframe_features", f"--num_shards={REAL_NUM_SHARDS}",
        *runner_args])
    assert manifest["tool"] == subset_pipeline.COMMAND
    # Every count (records read, kept per split, each drop reason, labels)
    # and every shard's sha256: the shards are byte-identical.
    assert _comparable(manifest) == _comparable(tool_manifest)
    assert manifest["records_read"] == 28792
    assert manifest["dropped"]["no_audio_signal"] > 0
    assert _outputs(tmp_path, frame_level=False) == tool_records
    assert len(tool_records) == manifest["kept"]["total"]


def test_bucketed_repeated_audio_equals_the_global_rule():
    """The pipeline applies `repeated_audio` per audio-hash bucket to the
    pairs of every file: the union equals the rule over all pairs."""
    rng = np.random.default_rng(0)
    pairs = []
    for audio_hash in rng.integers(0, 2**64, 200, dtype=np.uint64):
        # 1-5 ids per vector, some pairs read twice (a copied file).
        for key in rng.integers(0, 2**64, rng.integers(1, 6), dtype=np.uint64):
            pairs += [(audio_hash, key)] * int(rng.integers(1, 3))
    pairs = np.array(pairs, np.uint64)
    rng.shuffle(pairs)
    chunks = collections.defaultdict(list)
    for file_pairs in np.array_split(pairs, 7):
        for bucket, chunk in subset_pipeline.audio_buckets(file_pairs):
            hashes = np.frombuffer(chunk, np.uint64)[::2]
            assert all(int(h) >> 60 == bucket for h in hashes)
            chunks[bucket].append(chunk)
    assert len(chunks) == 16
    expected = subset.repeated_audio(pairs, 3)
    assert 0 < len(expected) < 200
    got = {}
    for bucket_chunks in chunks.values():
        for audio_hash, videos in subset_pipeline.silent_vectors(
                bucket_chunks, 3):
            assert audio_hash not in got
            got[audio_hash] = videos
    assert got == expected


def test_bucket_lists_keep_input_order_within_a_bucket():
    keys = [(b << 60) | i for i, b in enumerate([3, 0, 3, 15, 0, 3])]
    lists = subset_pipeline.bucket_lists("abcdef", keys)
    assert lists == [(0, ["b", "e"]), (3, ["a", "c", "f"]), (15, ["d"])]


def _first_real_shards(n):
    files = sorted(glob.glob(_real_pattern()))[:n]
    return ",".join(files)


def test_subset_pipeline_survives_a_retried_failure(tmp_path, monkeypatch):
    """A transform that fails once is retried by the runner
    (BundleBasedDirectRunner retries a failed bundle, as Dataflow does),
    and the output is still the tool's."""
    pattern = _first_real_shards(10)
    tool_manifest = subset.extract_subset(
        pattern, str(tmp_path / "tool"), frame_features=False, num_shards=2,
        progress=None)
    calls = {"read": 0, "resolve": 0}
    read, resolve = subset.RecordFetcher.read, subset.resolve_copies

    def read_failing_once(self, *args):
        calls["read"] += 1
        # The fifth record: its shard file is open and partly written.
        if calls["read"] == 5:
            raise RuntimeError("injected failure while writing a shard")
        return read(self, *args)

    def resolve_failing_once(*args):
        calls["resolve"] += 1
        if calls["resolve"] == 3:
            raise RuntimeError("injected failure choosing a copy")
        return resolve(*args)

    # The DoFns look both up on the module when they run, in this process.
    monkeypatch.setattr(subset.RecordFetcher, "read", read_failing_once)
    monkeypatch.setattr(subset, "resolve_copies", resolve_failing_once)
    manifest = subset_pipeline.run([
        f"--input_data_pattern={pattern}", f"--output_dir={tmp_path / 'beam'}",
        "--noframe_features", "--num_shards=2",
        "--runner=BundleBasedDirectRunner"])
    kept = tool_manifest["kept"]["total"]
    # Each failed once and its bundle ran again: more calls than records.
    assert calls["read"] > kept
    assert calls["resolve"] > kept
    assert _comparable(manifest) == _comparable(tool_manifest)
    assert _outputs(tmp_path / "beam", frame_level=False) == \
        _outputs(tmp_path / "tool", frame_level=False)


def _with_truncated_shard(directory):
    """Three real shards and a fourth cut inside a record."""
    files = sorted(glob.glob(_real_pattern()))[:4]
    os.makedirs(directory)
    for path in files[:3]:
        shutil.copy(path, directory)
    with open(files[3], "rb") as f:
        data = f.read()
    bad = os.path.join(directory, os.path.basename(files[3]))
    with open(bad, "wb") as f:
        f.write(data[:len(data) // 2])
    return os.path.join(directory, "*.tfrecord"), bad


def test_subset_pipeline_corrupt_shard(tmp_path):
    pattern, bad = _with_truncated_shard(str(tmp_path / "in"))
    # The command prints one line naming the file, no stack trace.
    result = subprocess.run(
        [sys.executable, "-m", "yt8m_xmodal.pipelines.subset",
         f"--input_data_pattern={pattern}", "--noframe_features",
         f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines()
              if line.startswith(subset_pipeline.COMMAND + ": error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert f"cannot read {bad} as video-level" in errors[0]
    assert "set --skip_corrupt=true to skip" in errors[0]
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "out" / subset.MANIFEST_NAME)

    # With --skip_corrupt: a counted skip, as the tool's.
    tool = subset.extract_subset(pattern, str(tmp_path / "tool"),
                                 frame_features=False, skip_corrupt=True,
                                 num_shards=2, progress=None)
    manifest = subset_pipeline.run([
        f"--input_data_pattern={pattern}", "--noframe_features",
        f"--output_dir={tmp_path / 'beam'}", "--num_shards=2",
        "--skip_corrupt"])
    assert [s["file"] for s in manifest["skipped_files"]] == [bad]
    assert _comparable(manifest) == _comparable(tool)


def test_subset_pipeline_frame_level_with_sized_shards(tiny_frame_data,
                                                       tmp_path):
    pattern = os.path.join(str(tiny_frame_data), "*.tfrecord")
    common = dict(feature_sizes=TINY_FEATURE_SIZES, min_frames=10)
    tool = subset.extract_subset(
        pattern, str(tmp_path / "tool"), frame_features=True, num_shards=1,
        selection=subset.build_selection(label_indices="0,2"), progress=None,
        **common)
    target_mb = 0.02
    manifest = subset_pipeline.run([
        f"--input_data_pattern={pattern}", f"--output_dir={tmp_path / 'beam'}",
        "--feature_sizes=16,8", "--min_frames=10", "--label_indices=0,2",
        f"--target_shard_mb={target_mb}"])
    assert manifest["level"] == "frame"
    for key in ("records_read", "kept", "dropped", "labels", "selection",
                "input_files", "skipped_files"):
        assert manifest[key] == tool[key], key
    assert tool["kept"]["total"] > 0
    assert _outputs(tmp_path / "beam", True) == _outputs(tmp_path / "tool",
                                                          True)
    # Each split's shards: as many as its bytes need at the target size.
    for split in subset.SPLITS:
        files = sorted(glob.glob(str(tmp_path / "beam" / f"{split}-*")))
        records_bytes = sum(len(r) for s, _, r in
                            _outputs(tmp_path / "beam", True) if s == split)
        expected = max(1, -(-records_bytes // int(target_mb * 2**20)))
        assert manifest["num_shards"][split] == expected == len(files)
        assert [s["file"] for s in manifest["shards"][split]] == \
            [os.path.basename(f) for f in files]
        assert sum(s["records"] for s in manifest["shards"][split]) == \
            manifest["kept"][split]


# ----------------------------------------------------------------------------
# Embedding


def _inference_embeddings(export_dir, pattern, path):
    signatures = modeling.load_signatures(export_dir)
    inference.run_inference(signatures, pattern, embeddings_file=path,
                            batch_size=64)
    return embeddings.read_embeddings(path)


def test_embed_pipeline_equals_inference(trained_dir, tiny_frame_data,
                                         tmp_path):
    pattern = os.path.join(str(tiny_frame_data), "*.tfrecord")
    export_dir = modeling.latest_export(str(trained_dir))
    expected = _inference_embeddings(export_dir, pattern,
                                     str(tmp_path / "inference.npz"))
    prefix = str(tmp_path / "emb" / "out")
    result = embed_pipeline.run([
        f"--input_data_pattern={pattern}", f"--train_dir={trained_dir}",
        f"--output_prefix={prefix}", "--num_shards=4", "--batch_size=16"])
    assert result["export_dir"] == export_dir
    assert result["shards"] == [f"{prefix}-{i:05d}-of-00004.npz"
                                for i in range(4)]
    got = embeddings.read_embeddings(f"{prefix}-*-of-00004.npz")
    assert len(got.ids) == len(expected.ids) == 160
    assert sorted(got.ids) == sorted(expected.ids)
    order = {video_id: i for i, video_id in enumerate(expected.ids)}
    rows = [order[i] for i in got.ids]
    for key in ("audio", "video"):
        np.testing.assert_allclose(getattr(got, key),
                                   getattr(expected, key)[rows], atol=1e-5)
    # Each shard holds the ids whose key is its index, sorted.
    for shard, path in enumerate(result["shards"]):
        ids = embeddings.read_embeddings(path).ids
        assert list(ids) == sorted(ids)
        assert all(subset.id_key(i) % 4 == shard for i in ids)


def test_embed_pipeline_names_a_corrupt_file(trained_dir, tiny_frame_data,
                                             tmp_path):
    source = sorted(glob.glob(os.path.join(str(tiny_frame_data),
                                           "train-*.tfrecord")))[0]
    with open(source, "rb") as f:
        data = f.read()
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(Exception) as info:
        embed_pipeline.run([f"--input_data_pattern={bad}",
                            f"--train_dir={trained_dir}",
                            f"--output_prefix={tmp_path / 'out'}"])
    message = pipelines.user_message(info.value)
    assert message is not None and message.startswith(
        f"{bad} is corrupt or truncated"), message


