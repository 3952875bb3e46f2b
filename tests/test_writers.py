"""yt8m_xmodal.writers: YT8M quantization and the record format it writes."""

import os

import numpy as np
import pytest
import tensorflow as tf

from yt8m_xmodal import features, writers


def test_quantize_matches_the_feature_extractor_formula():
    # (x + 2) * 255 / 4, by hand: -2 -> 0, 2 -> 255, 0 -> 127.5 -> 128 (even).
    x = np.array([-2.0, 2.0, 0.0, -3.0, 5.0, -1.0])
    expected = np.array([0, 255, 128, 0, 255, 64])  # -1 -> 63.75 -> 64
    np.testing.assert_array_equal(features.quantize(x), expected)
    assert features.quantize(x).dtype == np.uint8


def test_quantize_rounds_half_to_even_like_python_round():
    # Python's round() is round-half-even; in float64 the only exact half in
    # range is x = 0 -> 127.5 (-> 128), so random values check the rest.
    x = np.random.default_rng(1).uniform(-2.5, 2.5, 2000)
    expected = [round((min(max(v, -2.0), 2.0) + 2.0) * 255.0 / 4.0) for v in x]
    np.testing.assert_array_equal(features.quantize(x), expected)
    assert features.quantize([0.0])[0] == 128


def test_frame_example_holds_raw_uint8_bytes_per_frame():
    rng = np.random.default_rng(0)
    video = rng.uniform(-2, 2, (5, 16))
    audio = rng.integers(0, 256, (5, 8), dtype=np.uint8)  # codes pass through
    example = writers.make_frame_example("ab12", [3, 7], video, audio)
    assert example.context.feature["id"].bytes_list.value == [b"ab12"]
    assert list(example.context.feature["labels"].int64_list.value) == [3, 7]
    rgb = example.feature_lists.feature_list["rgb"].feature
    sound = example.feature_lists.feature_list["audio"].feature
    assert len(rgb) == len(sound) == 5
    for t in range(5):
        np.testing.assert_array_equal(
            np.frombuffer(rgb[t].bytes_list.value[0], np.uint8),
            features.quantize(video[t]))
        assert sound[t].bytes_list.value[0] == audio[t].tobytes()


def test_video_example_holds_float_lists():
    example = writers.make_video_example(b"zz", [1], np.arange(4.0), [0.5, -1.5])
    feature = example.features.feature
    assert feature["id"].bytes_list.value == [b"zz"]
    assert list(feature["mean_rgb"].float_list.value) == [0, 1, 2, 3]
    assert list(feature["mean_audio"].float_list.value) == [0.5, -1.5]


def test_sharded_writer_names_and_fills_shards_round_robin(tmp_path):
    with writers.ShardedRecordWriter(str(tmp_path), "train", 3) as writer:
        for i in range(7):
            writer.write(f"record-{i}".encode())
    assert writer.num_records == 7
    assert [os.path.basename(p) for p in writer.paths] == [
        "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord"]
    contents = [[r.numpy().decode() for r in tf.data.TFRecordDataset(p)]
                for p in writer.paths]
    assert contents == [["record-0", "record-3", "record-6"],
                        ["record-1", "record-4"], ["record-2", "record-5"]]


def test_sharded_writer_rejects_zero_shards(tmp_path):
    with pytest.raises(ValueError, match="num_shards"):
        writers.ShardedRecordWriter(str(tmp_path), "x", 0)
