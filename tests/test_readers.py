"""yt8m_xmodal.readers: YT8M records in, batch dictionaries out, bad input named.

Records are written with yt8m_xmodal.writers into tmp_path; small feature
sizes (16 video, 8 audio bytes) keep the tests fast. Expected values come from
a float64 numpy evaluation of the YT8M formula, not from the reader's ops.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from yt8m_xmodal import config as config_lib
from yt8m_xmodal import features, readers, writers
from yt8m_xmodal.errors import ConfigError, DataError

SIZES = (16, 8)
NUM_CLASSES = 10
HALF_STEP = 0.5 * 4.0 / 255.0


def _dequantize64(codes):
    """The YT8M formula in float64: x * 4/255 + 4/512 - 2."""
    return np.asarray(codes, np.float64) * 4.0 / 255.0 + 4.0 / 512.0 - 2.0


def _frame_videos(rng, lengths, audio_lengths=None):
    """[(id, labels, video codes [T,16], audio codes [Ta,8])]."""
    audio_lengths = audio_lengths or lengths
    return [(f"v{i:03d}", sorted(rng.choice(NUM_CLASSES, 2, replace=False)),
             rng.integers(0, 256, (t, SIZES[0]), dtype=np.uint8),
             rng.integers(0, 256, (ta, SIZES[1]), dtype=np.uint8))
            for i, (t, ta) in enumerate(zip(lengths, audio_lengths))]


def _write(tmp_path, records, prefix="part", num_shards=1):
    with writers.ShardedRecordWriter(str(tmp_path), prefix, num_shards) as w:
        for record in records:
            w.write(record)
    return w.paths


def _write_frames(tmp_path, videos, **kwargs):
    return _write(tmp_path, [writers.make_frame_example(*v) for v in videos],
                  **kwargs)


def _frame_reader(**kwargs):
    kwargs.setdefault("feature_sizes", SIZES)
    kwargs.setdefault("num_classes", NUM_CLASSES)
    return readers.YT8MFrameFeatureReader(**kwargs)


def _video_reader(**kwargs):
    kwargs.setdefault("feature_sizes", SIZES)
    kwargs.setdefault("num_classes", NUM_CLASSES)
    return readers.YT8MAggregatedFeatureReader(**kwargs)


def _read_all(reader, pattern, batch_size=4, **kwargs):
    """All batches concatenated into numpy arrays, keyed like the batch."""
    batches = list(reader.batches(pattern, batch_size, **kwargs))
    out = {}
    for key in batches[0]:
        values = [b[key] for b in batches]
        if isinstance(values[0], tf.RaggedTensor):
            out[key] = [row for v in values for row in v.to_list()]
        else:
            out[key] = np.concatenate([v.numpy() for v in values])
    return out


# --- format constants ---------------------------------------------------------

def test_dequantize_constants_by_hand():
    values = features.dequantize(tf.constant([0, 255, 128], tf.uint8)).numpy()
    np.testing.assert_array_equal(values[:2], [-1.9921875, 2.0078125])
    # 128 * 4/255 + 4/512 - 2 = 2.0078431372549 + 0.0078125 - 2
    np.testing.assert_allclose(values[2], 0.0156556372549, atol=1e-6)


# --- frame level --------------------------------------------------------------

def test_frame_round_trip_pads_truncates_and_masks(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [1, 5, 12, 20, 7, 12, 3]
    videos = _frame_videos(rng, lengths)
    pattern = os.path.join(_write_frames(tmp_path, videos, num_shards=3)[0]
                           .rsplit("-00000-", 1)[0] + "-*")
    batch = _read_all(_frame_reader(max_frames=12), pattern, batch_size=3)
    assert batch["video"].shape == (7, 12, SIZES[0])
    assert batch["audio"].shape == (7, 12, SIZES[1])
    assert batch["video"].dtype == np.float32
    assert batch["mask"].dtype == bool and batch["num_frames"].dtype == np.int32
    by_id = {vid.decode(): i for i, vid in enumerate(batch["id"])}
    assert sorted(by_id) == [v[0] for v in videos]
    for vid, labels, video, audio in videos:
        row = by_id[vid]
        kept = min(len(video), 12)
        assert batch["num_frames"][row] == kept
        np.testing.assert_array_equal(batch["mask"][row], np.arange(12) < kept)
        np.testing.assert_allclose(batch["video"][row, :kept],
                                   _dequantize64(video[:kept]), atol=1e-6)
        np.testing.assert_allclose(batch["audio"][row, :kept],
                                   _dequantize64(audio[:kept]), atol=1e-6)
        # Padding past num_frames is exactly zero.
        assert not batch["video"][row, kept:].any()
        assert not batch["audio"][row, kept:].any()
        expected_labels = np.zeros(NUM_CLASSES)
        expected_labels[labels] = 1
        np.testing.assert_array_equal(batch["labels"][row], expected_labels)


def test_frame_round_trip_from_floats_within_half_a_step(tmp_path):
    # YT8M's dequantization adds 4/512 (half a 256-bin step) to the rounded
    # code, so the round trip reproduces x + 4/512 within half a 255-step.
    rng = np.random.default_rng(1)
    video = rng.uniform(-2.3, 2.3, (9, SIZES[0]))
    audio = rng.uniform(-2.3, 2.3, (9, SIZES[1]))
    _write_frames(tmp_path, [("f", [1], video, audio)])
    batch = _read_all(_frame_reader(max_frames=9), str(tmp_path / "*"))
    for key, x in (("video", video), ("audio", audio)):
        expected = np.clip(x, -2, 2) + 4.0 / 512.0
        error = np.abs(batch[key][0].astype(np.float64) - expected)
        assert error.max() <= HALF_STEP + 1e-6
        # ... which is within one full step of the value written.
        assert np.abs(batch[key][0] - np.clip(x, -2, 2)).max() <= 2 * HALF_STEP


def test_frame_count_is_the_shorter_stream(tmp_path):
    rng = np.random.default_rng(2)
    videos = _frame_videos(rng, [12, 4], audio_lengths=[9, 6])
    _write_frames(tmp_path, videos)
    batch = _read_all(_frame_reader(max_frames=10), str(tmp_path / "*"))
    np.testing.assert_array_equal(batch["num_frames"], [9, 4])
    np.testing.assert_array_equal(batch["mask"].sum(axis=1), [9, 4])
    # Video frames 9..11 exist in the record but lie past num_frames.
    assert not batch["video"][0, 9:].any()
    np.testing.assert_allclose(batch["video"][0, :9],
                               _dequantize64(videos[0][2][:9]), atol=1e-6)
    assert not batch["audio"][1, 4:].any()


def test_default_sizes_give_the_contract_shapes(tmp_path):
    rng = np.random.default_rng(3)
    video = rng.integers(0, 256, (310, 1024), dtype=np.uint8)
    audio = rng.integers(0, 256, (305, 128), dtype=np.uint8)
    _write_frames(tmp_path, [("full", [3861, 0], video, audio)])
    reader = readers.YT8MFrameFeatureReader()
    batch = next(reader.batches(str(tmp_path / "*"), 2))
    assert batch["video"].shape == (1, 300, 1024)
    assert batch["audio"].shape == (1, 300, 128)
    assert batch["labels"].shape == (1, 3862)
    assert batch["num_frames"].numpy().tolist() == [300]
    np.testing.assert_array_equal(np.flatnonzero(batch["labels"][0]), [0, 3861])
    np.testing.assert_allclose(batch["video"][0].numpy(),
                               _dequantize64(video[:300]), atol=1e-6)


def test_ragged_labels_and_duplicate_labels(tmp_path):
    videos = [("a", [4, 2, 4], np.zeros((2, 16), np.uint8),
               np.zeros((2, 8), np.uint8)),
              ("b", [], np.zeros((1, 16), np.uint8), np.zeros((1, 8), np.uint8))]
    _write_frames(tmp_path, videos)
    ragged = _read_all(_frame_reader(ragged_labels=True), str(tmp_path / "*"))
    assert ragged["labels"] == [[4, 2, 4], []]
    dense = _read_all(_frame_reader(), str(tmp_path / "*"))
    np.testing.assert_array_equal(dense["labels"][0], np.eye(NUM_CLASSES)[[2, 4]].sum(0))
    assert not dense["labels"][1].any()


def test_evaluation_order_is_deterministic_and_seeded_shuffle_repeats(tmp_path):
    rng = np.random.default_rng(4)
    _write_frames(tmp_path, _frame_videos(rng, [2] * 24), num_shards=4)
    pattern = str(tmp_path / "part-*")
    reader = _frame_reader(max_frames=2)

    def ids(**kwargs):
        return _read_all(reader, pattern, batch_size=5, **kwargs)["id"].tolist()

    plain = ids()
    assert plain == ids() and sorted(plain) == sorted(set(plain))
    shuffled = ids(shuffle=True, seed=7)
    assert shuffled == ids(shuffle=True, seed=7)
    assert sorted(shuffled) == sorted(plain) and shuffled != plain
    assert len(ids(num_epochs=2)) == 48


def test_drop_remainder_gives_a_static_batch_size(tmp_path):
    rng = np.random.default_rng(5)
    _write_frames(tmp_path, _frame_videos(rng, [3] * 7))
    dataset = _frame_reader(max_frames=4).dataset(
        str(tmp_path / "*"), 3, drop_remainder=True)
    assert dataset.element_spec["video"].shape.as_list() == [3, 4, SIZES[0]]
    assert sum(1 for _ in readers.iterate(dataset)) == 2


def test_distributed_dataset_iterates_with_two_replicas(tmp_path):
    rng = np.random.default_rng(6)
    _write_frames(tmp_path, _frame_videos(rng, [3] * 8))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dataset = _frame_reader(max_frames=4).dataset(
        str(tmp_path / "*"), 4, drop_remainder=True)
    per_replica = [strategy.experimental_local_results(b["num_frames"])
                   for b in readers.iterate(
                       strategy.experimental_distribute_dataset(dataset))]
    assert len(per_replica) == 2
    assert all(len(r) == 2 and r[0].shape == (2,) for r in per_replica)


# --- video level --------------------------------------------------------------

def test_video_level_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(7)
    rows = [(f"m{i}", [i % NUM_CLASSES], rng.normal(size=SIZES[0]),
             rng.normal(size=SIZES[1])) for i in range(6)]
    _write(tmp_path, [writers.make_video_example(*r) for r in rows])
    batch = _read_all(_video_reader(), str(tmp_path / "*"))
    assert batch["video"].shape == (6, SIZES[0])
    for i, (vid, labels, video, audio) in enumerate(rows):
        assert batch["id"][i].decode() == vid
        np.testing.assert_array_equal(batch["video"][i], video.astype(np.float32))
        np.testing.assert_array_equal(batch["audio"][i], audio.astype(np.float32))
        assert np.flatnonzero(batch["labels"][i]).tolist() == labels


def test_real_validate_shard(shared_video_dir):
    reader = readers.YT8MAggregatedFeatureReader()
    batch = _read_all(reader, str(shared_video_dir / "validate0000.tfrecord"),
                      batch_size=100)
    assert batch["video"].shape == (284, 1024)
    assert batch["audio"].shape == (284, 128)
    assert batch["labels"].shape == (284, 3862)
    assert (batch["labels"].sum(axis=1) >= 1).all()
    assert all(len(i) == 4 for i in batch["id"])
    assert np.isfinite(batch["video"]).all()


def test_all_real_shards_parse(shared_video_dir):
    reader = readers.YT8MAggregatedFeatureReader()
    pattern = str(shared_video_dir / "validate00*.tfrecord")
    count = sum(int(b["id"].shape[0]) for b in reader.batches(pattern, 2048))
    assert count == 28792
    assert not any(reader.skip_counts.values())


# --- files and flags ----------------------------------------------------------

def test_resolve_files_expands_comma_separated_globs(tmp_path):
    for name in ("train-1.tfrecord", "train-0.tfrecord", "val-0.tfrecord"):
        (tmp_path / name).write_bytes(b"")
    files = readers.resolve_files(
        f"{tmp_path}/train-*, {tmp_path}/val-*,{tmp_path}/train-0.tfrecord")
    assert [os.path.basename(f) for f in files] == [
        "train-0.tfrecord", "train-1.tfrecord", "val-0.tfrecord"]


def test_pattern_matching_nothing_names_the_glob(tmp_path):
    (tmp_path / "train-0.tfrecord").write_bytes(b"")
    missing = f"{tmp_path}/tarin-*"
    with pytest.raises(DataError, match="tarin-\\*"):
        readers.resolve_files(f"{tmp_path}/train-*,{missing}")
    with pytest.raises(DataError, match="matches no files"):
        _frame_reader().dataset(missing, 2)


def test_reader_for_builds_the_reader_a_data_config_describes():
    frame = readers.reader_for(config_lib.DataConfig(
        feature_names=("rgb", "audio"), feature_sizes="1024,128",
        max_frames=50))
    assert isinstance(frame, readers.YT8MFrameFeatureReader)
    assert frame.feature_sizes == (1024, 128) and frame.max_frames == 50
    video = readers.reader_for(config_lib.DataConfig(frame_features=False))
    assert isinstance(video, readers.YT8MAggregatedFeatureReader)
    assert video.feature_names == ("mean_rgb", "mean_audio")
    with pytest.raises(ConfigError, match="feature_sizes"):
        config_lib.DataConfig(feature_sizes="1024")
    with pytest.raises(ConfigError, match="max_frames=0"):
        config_lib.DataConfig(max_frames=0)
    with pytest.raises(ConfigError, match="max_frames=0"):
        readers.YT8MFrameFeatureReader(max_frames=0)


# --- bad input ----------------------------------------------------------------

def _frame_example(vid, video, audio, labels=(1,)):
    return writers.make_frame_example(vid, labels, video, audio)


def _good(i):
    return _frame_example(f"ok{i}", np.full((3, 16), i, np.uint8),
                          np.full((3, 8), i, np.uint8))


def _without_audio_list():
    example = _good(99)
    example.ParseFromString(example.SerializeToString())
    del example.feature_lists.feature_list["audio"]
    example.context.feature["id"].bytes_list.value[0] = b"noaudio"
    return example


BAD_FRAME_RECORDS = {
    "bad_frame_size": (lambda: _frame_example(
        "short", np.zeros((3, 15), np.uint8), np.zeros((3, 8), np.uint8)),
        "'rgb' frame 0 has 15 bytes, expected 16"),
    "missing_feature_list": (_without_audio_list,
                             "'audio' is missing or empty"),
    "zero_frames": (lambda: _frame_example(
        "empty", np.zeros((0, 16), np.uint8), np.zeros((0, 8), np.uint8)),
        "no frames"),
    "bad_label": (lambda: _frame_example(
        "label", np.zeros((3, 16), np.uint8), np.zeros((3, 8), np.uint8),
        labels=[2, NUM_CLASSES]), "label outside"),
}


@pytest.mark.parametrize("reason", sorted(BAD_FRAME_RECORDS))
def test_bad_frame_record_raises_naming_file_record_and_id(tmp_path, reason):
    make_bad, detail = BAD_FRAME_RECORDS[reason]
    bad = make_bad()
    path = _write(tmp_path, [_good(0), _good(1), bad, _good(2)])[0]
    vid = bad.context.feature["id"].bytes_list.value[0].decode()
    with pytest.raises(DataError) as raised:
        list(_frame_reader(max_frames=4).batches(path, 2))
    message = str(raised.value)
    assert f"{path}:2" in message and repr(vid) in message
    assert detail in message
    assert "Traceback" not in message and "function_node" not in message


@pytest.mark.parametrize("reason", sorted(BAD_FRAME_RECORDS))
def test_bad_frame_record_is_skipped_and_counted(tmp_path, reason):
    make_bad, _ = BAD_FRAME_RECORDS[reason]
    path = _write(tmp_path, [_good(0), make_bad(), _good(1), _good(2)])[0]
    reader = _frame_reader(max_frames=4, skip_corrupt=True)
    batch = _read_all(reader, path, batch_size=2)
    assert batch["id"].tolist() == [b"ok0", b"ok1", b"ok2"]
    # Skipping refills batches: 3 good records in batches of 2 -> sizes 2, 1.
    assert [int(b["id"].shape[0]) for b in reader.batches(path, 2)] == [2, 1]
    assert reader.skip_counts[reason] == 2  # two passes above
    assert sum(reader.skip_counts.values()) == 2
    assert reason in reader.skipped[0] and f"{path}:1" in reader.skipped[0]
    assert f"2 {reason}" in reader.skip_summary()


def _damaged_shard(tmp_path, damage):
    path = _write(tmp_path, [_good(i) for i in range(5)])[0]
    data = bytearray(open(path, "rb").read())
    if damage == "truncated":
        data = data[:-10]
    elif damage == "header_cut":
        # A sixth record cut inside its length header: TFRecordDataset itself
        # ends the file there without an error.
        data += b"\x10\x00\x00\x00\x00"
    else:  # flip a byte inside the fourth record's data: a CRC failure
        data[len(data) * 7 // 10] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(data))
    return path


@pytest.mark.parametrize("damage", ["truncated", "crc", "header_cut"])
def test_damaged_shard_raises_naming_the_file(tmp_path, damage):
    path = _damaged_shard(tmp_path, damage)
    with pytest.raises(DataError, match="truncated or corrupt") as raised:
        list(_frame_reader(max_frames=4).batches(path, 2))
    assert path in str(raised.value)


@pytest.mark.parametrize("damage", ["truncated", "crc", "header_cut"])
def test_damaged_shard_is_skipped_and_counted(tmp_path, damage):
    path = _damaged_shard(tmp_path, damage)
    good_dir = tmp_path / "good"
    good = _write(good_dir, [_good(7)])[0]
    reader = _frame_reader(max_frames=4, skip_corrupt=True)
    batch = _read_all(reader, f"{path},{good}", batch_size=2)
    ids = batch["id"].tolist()
    # The records before the damage are kept, the good shard is read whole.
    assert b"ok7" in ids and b"ok0" in ids
    # A cut inside a sixth record's header leaves the five before it whole.
    assert (b"ok4" in ids) == (damage == "header_cut")
    assert reader.skip_counts["corrupt_shard"] == 1
    assert path in reader.skipped[0]


@pytest.mark.parametrize("damage", ["crc", "header_cut"])
def test_damaged_video_level_shard_raises_naming_the_file(tmp_path, damage):
    # The video-level reader, with its small records, has its own tests.
    path = _write(tmp_path, [_video_example(f"g{i}", np.full(16, i),
                                            np.full(8, i)) for i in range(40)])[0]
    data = bytearray(open(path, "rb").read())
    if damage == "header_cut":
        data += b"\x10\x00\x00"
    else:
        data[len(data) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(DataError, match="truncated or corrupt") as raised:
        list(_video_reader().batches(path, 8))
    assert path in str(raised.value)
    reader = _video_reader(skip_corrupt=True)
    ids = _read_all(reader, path, batch_size=8)["id"].tolist()
    assert b"g0" in ids and reader.skip_counts["corrupt_shard"] == 1


def test_damaged_shard_among_alike_shards_is_the_one_named(tmp_path):
    # Shards written alike have records at the same byte offsets (and TF's
    # own DataLossError names only an offset): the error names the damaged.
    good = _write(tmp_path / "a", [_good(i) for i in range(5)])[0]
    damaged = _damaged_shard(tmp_path / "b", "crc")
    with pytest.raises(DataError) as raised:
        list(_frame_reader(max_frames=4).batches(f"{good},{damaged}", 2))
    message = str(raised.value)
    assert f"shard {damaged} is truncated or corrupt" in message
    assert good not in message


def _video_example(vid, video, audio):
    return writers.make_video_example(vid, [1], video, audio)


BAD_VIDEO_RECORDS = {
    "non_finite": (lambda: _video_example(
        "nan", np.r_[np.zeros(15), np.nan], np.zeros(8)), "NaN or inf"),
    "inf": (lambda: _video_example(
        "inf", np.zeros(16), np.r_[np.inf, np.zeros(7)]), "NaN or inf"),
    "bad_feature_size": (lambda: _video_example(
        "size", np.zeros(16), np.zeros(7)),
        "'mean_audio' has 7 floats, expected 8"),
}


@pytest.mark.parametrize("case", sorted(BAD_VIDEO_RECORDS))
def test_bad_video_level_record(tmp_path, case):
    make_bad, detail = BAD_VIDEO_RECORDS[case]
    good = [_video_example(f"g{i}", np.full(16, i), np.full(8, i))
            for i in range(3)]
    path = _write(tmp_path, [good[0], make_bad(), good[1], good[2]])[0]
    with pytest.raises(DataError) as raised:
        list(_video_reader().batches(path, 2))
    assert f"{path}:1" in str(raised.value) and detail in str(raised.value)
    reader = _video_reader(skip_corrupt=True)
    batch = _read_all(reader, path, batch_size=2)
    assert batch["id"].tolist() == [b"g0", b"g1", b"g2"]
    reason = "non_finite" if case == "inf" else case
    assert reader.skip_counts[reason] == 1


def test_unparseable_record_names_the_record(tmp_path):
    path = _write(tmp_path, [_good(0).SerializeToString(), b"\xff\xfe not a proto"])[0]
    with pytest.raises(DataError, match=f"{path}:1"):
        list(_frame_reader(max_frames=4).batches(path, 2))


def test_raw_dataset_errors_carry_the_message_for_iterate(tmp_path):
    # A loop that iterates the plain dataset sees TF's error; iterate() (used
    # by reader.batches) turns it into the DataError.
    path = _write(tmp_path, [_frame_example(
        "short", np.zeros((3, 15), np.uint8), np.zeros((3, 8), np.uint8))])[0]
    dataset = _frame_reader(max_frames=4).dataset(path, 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="15 bytes"):
        list(dataset)
    with pytest.raises(DataError, match="15 bytes"):
        list(readers.iterate(dataset))


def test_skipping_while_shuffling_keeps_every_good_record(tmp_path):
    make_bad, _ = BAD_FRAME_RECORDS["bad_frame_size"]
    records = [_good(i) for i in range(9)]
    records.insert(4, make_bad())
    path = _write(tmp_path, records)[0]
    reader = _frame_reader(max_frames=4, skip_corrupt=True)
    sizes = [int(b["id"].shape[0]) for b in reader.batches(
        path, 4, shuffle=True, seed=3, drop_remainder=True)]
    assert sizes == [4, 4]  # 9 good records, refilled to full batches
    assert reader.skip_counts["bad_frame_size"] == 1
    ids = _read_all(reader, path, batch_size=4, shuffle=True, seed=3)["id"]
    assert sorted(ids.tolist()) == [f"ok{i}".encode() for i in range(9)]


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc",
                    reason="the allocator settings are glibc's")
def test_tune_allocator_is_accepted_by_glibc_and_idempotent():
    # glibc's mallopt returns 0 for a value it refuses (an M_MMAP_THRESHOLD
    # above its maximum, say); every setting must be taken.
    assert readers.tune_allocator() is True
    assert readers.tune_allocator() is True
