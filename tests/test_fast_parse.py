"""The frame-level reader's fast path agrees byte for byte with its general parse.

`YT8MFrameFeatureReader._parse_batch` reads a batch whose records all have the
regular SequenceExample layout straight from the record bytes, and hands any
other batch to `_parse_any` (`parse_sequence_example`). For every kind of
record the reliability cases make, both are run on the same batch and every
output (batch, reason codes, error evidence) must be identical; each case also
states whether the fast path takes it, so a fast path that never runs fails.
"""

import numpy as np
import pytest
import tensorflow as tf

from yt8m_xmodal import readers, writers

SIZES = (16, 8)
NUM_CLASSES = 10


def _codes(rng, frames, size):
    return rng.integers(0, 256, (frames, size), dtype=np.uint8)


def _example(rng, vid, frames, audio_frames=None, labels=(1, 3),
             sizes=SIZES, names=("rgb", "audio")):
    audio_frames = frames if audio_frames is None else audio_frames
    return writers.make_frame_example(
        vid, labels, _codes(rng, frames, sizes[0]),
        _codes(rng, audio_frames, sizes[1]), feature_names=names)


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _without(example, name):
    del example.feature_lists.feature_list[name]
    return example


def _without_id(example):
    del example.context.feature["id"]
    return example


def _with_extra_list(example):
    example.feature_lists.feature_list["extra"].feature.add().CopyFrom(
        _bytes_feature(b"x" * 16))
    return example


def _with_frames(rng, video_sizes, audio_frames=2):
    """A record whose video frames have the given byte sizes."""
    example = _example(rng, "mixed", 0, audio_frames)
    video = example.feature_lists.feature_list["rgb"]
    for size in video_sizes:
        video.feature.add().CopyFrom(_bytes_feature(bytes(size)))
    return example


def _reordered(example):
    """The same message with the feature lists serialized before the context
    (a valid protobuf; the fields simply come in another order)."""
    lists = tf.train.SequenceExample(feature_lists=example.feature_lists)
    context = tf.train.SequenceExample(context=example.context)
    return lists.SerializeToString() + context.SerializeToString()


def _record_kinds(rng):
    """name -> (serialized records, reader kwargs, fast path expected)."""
    good = [_example(rng, f"ok{i}", t) for i, t in enumerate((3, 1, 4, 2))]
    return {
        "good": (good, {}, True),
        "2 and 300 frames": (
            [_example(rng, "two", 2), _example(rng, "long", 300)],
            {"max_frames": 300}, True),
        "shorter audio": ([_example(rng, "short", 4, 2),
                           _example(rng, "short2", 1, 3)], {}, True),
        "zero frames": ([_example(rng, "empty", 0), good[0]], {}, True),
        "one list empty": ([_example(rng, "noaudio", 3, 0), good[1]], {},
                           True),
        "bad label": ([_example(rng, "label", 3, labels=[2, NUM_CLASSES]),
                       _example(rng, "neg", 2, labels=[-1])], {}, True),
        "no labels": ([_example(rng, "nolabel", 3, labels=[])], {}, True),
        "id missing": ([_without_id(_example(rng, "x", 3)), good[2]], {},
                       True),
        "max_frames truncation": ([_example(rng, "cut", 6), good[0]],
                                  {"max_frames": 4}, False),
        "missing list": ([_without(_example(rng, "gone", 3), "audio"),
                          good[0]], {}, False),
        "both lists missing": ([_without(_without(
            _example(rng, "none", 3), "audio"), "rgb")], {}, False),
        "wrong frame size": ([_example(rng, "small", 3, sizes=(15, 8)),
                              good[0]], {}, False),
        "frame sizes that add up to whole strides": (
            [_with_frames(rng, (15, 17)), good[0]], {}, False),
        "other feature names": (
            [_example(rng, "names", 3, names=("video", "sound"))], {}, False),
        "reader with other names and sizes": (
            [_example(rng, "custom", 3, sizes=(200, 30),
                      names=("video", "sound"))],
            {"feature_names": "video,sound", "feature_sizes": "200,30"},
            True),
        "extra feature list": ([_with_extra_list(_example(rng, "extra", 3))],
                               {}, False),
        "fields in another order": ([_reordered(_example(rng, "order", 3))],
                                    {}, False),
    }


def _reader(**kwargs):
    kwargs.setdefault("feature_sizes", SIZES)
    kwargs.setdefault("num_classes", NUM_CLASSES)
    kwargs.setdefault("max_frames", 5)
    return readers.YT8MFrameFeatureReader(**kwargs)


def _serialized(records):
    return tf.constant([r if isinstance(r, bytes) else r.SerializeToString()
                        for r in records])


def _assert_identical(got, want, where=""):
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), where
        for key in want:
            _assert_identical(got[key], want[key], f"{where}/{key}")
    elif isinstance(want, (tuple, list)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_identical(g, w, f"{where}[{i}]")
    elif isinstance(want, tf.RaggedTensor):
        assert isinstance(got, tf.RaggedTensor), where
        assert got.dtype == want.dtype, where
        _assert_identical(got.values, want.values, where + ".values")
        _assert_identical(got.row_splits, want.row_splits, where + ".splits")
    else:
        got, want = got.numpy(), want.numpy()
        assert got.dtype == want.dtype and got.shape == want.shape, where
        if got.dtype == object:  # strings
            assert got.tolist() == want.tolist(), where
        else:
            # Bytes, not values: float32 outputs must match bit for bit.
            assert got.tobytes() == want.tobytes(), where


CASES = sorted(_record_kinds(np.random.default_rng(0)))


@pytest.mark.parametrize("case", CASES)
def test_fast_path_agrees_with_the_general_parse(case):
    records, kwargs, fast_expected = _record_kinds(
        np.random.default_rng(0))[case]
    reader = _reader(**kwargs)
    serialized = _serialized(records)
    names = tf.constant([f"shard:{i}" for i in range(len(records))])
    fast, _, _ = reader._fast_path(serialized)
    assert bool(tf.reduce_all(fast)) == fast_expected
    _assert_identical(reader._parse_batch(names, serialized),
                      reader._parse_any(names, serialized))


def test_regular_records_are_taken_one_by_one():
    """In a mixed batch each regular record is recognized as such; the
    batch as a whole goes to the general parse and still agrees."""
    kinds = _record_kinds(np.random.default_rng(1))
    records = (kinds["good"][0][:2] + kinds["missing list"][0][:1]
               + kinds["frame sizes that add up to whole strides"][0][:1]
               + kinds["good"][0][2:])
    reader = _reader()
    serialized = _serialized(records)
    names = tf.constant([f"shard:{i}" for i in range(len(records))])
    fast, _, _ = reader._fast_path(serialized)
    assert fast.numpy().tolist() == [True, True, False, False, True, True]
    _assert_identical(reader._parse_batch(names, serialized),
                      reader._parse_any(names, serialized))


def test_the_regular_layout_is_the_one_protobuf_writes():
    """The frame header and stride the fast path expects, by hand: Feature
    tag and length, BytesList tag and length, value tag and length."""
    reader = readers.YT8MFrameFeatureReader()
    header, stride = reader._layout["video"]
    assert bytes(header) == bytes([0x0A, 0x86, 0x08, 0x0A, 0x83, 0x08,
                                   0x0A, 0x80, 0x08])
    assert stride == 1033
    header, stride = reader._layout["audio"]
    assert bytes(header) == bytes([0x0A, 0x86, 0x01, 0x0A, 0x83, 0x01,
                                   0x0A, 0x80, 0x01])
    assert stride == 137
    example = _example(np.random.default_rng(2), "x", 2, sizes=(1024, 128))
    data = example.SerializeToString()
    frame = example.feature_lists.feature_list["rgb"].feature[0]
    frame_bytes = frame.bytes_list.value[0]
    at = data.index(frame_bytes)
    assert data[at - 9:at] == bytes(reader._layout["video"][0])


def test_garbage_record_fails_the_batch_naming_it():
    reader = _reader()
    good = _example(np.random.default_rng(3), "ok", 2).SerializeToString()
    serialized = tf.constant([good, b"\x0a\x05garbage-not-a-protobuf"])
    names = tf.constant(["shard:0", "shard:1"])
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        reader._parse_batch(names, serialized)
    assert "shard:1" in str(raised.value)


def test_dataset_reads_the_same_through_either_path(tmp_path):
    """The whole pipeline, fast path on and off, on real-size frames."""
    rng = np.random.default_rng(4)
    records = [_example(rng, f"v{i}", t, sizes=(1024, 128))
               for i, t in enumerate((300, 2, 17, 300, 5))]
    with writers.ShardedRecordWriter(str(tmp_path), "part", 2) as writer:
        for record in records:
            writer.write(record)
    pattern = str(tmp_path / "part-*")
    fast_reader = readers.YT8MFrameFeatureReader(num_classes=NUM_CLASSES)
    general = readers.YT8MFrameFeatureReader(num_classes=NUM_CLASSES)
    general._layout = None  # only the general parse
    got = list(fast_reader.batches(pattern, 2))
    want = list(general.batches(pattern, 2))
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        _assert_identical(g, w)
