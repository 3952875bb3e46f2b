"""Writes YouTube-8M TFRecords: the inverse of `readers`, at both levels.

Frame level is a `tf.train.SequenceExample` with context `id` (bytes) and
`labels` (int64 list) and one feature list per view holding one bytes value of
raw uint8 codes per frame. Video level is a `tf.train.Example` with `id`,
`labels` and one float list per view. Both are byte-compatible with the
official shards and the starter code's readers; `id_feature="video_id"`
writes the 2017 release's layout, whose id key is `video_id`.
"""

import hashlib
import os

import numpy as np
import tensorflow as tf

from yt8m_xmodal import features


def _bytes_feature(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _int64_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _float_feature(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _as_bytes(video_id):
    return video_id if isinstance(video_id, bytes) else str(video_id).encode()


def make_frame_example(video_id, labels, video, audio,
                       feature_names=features.FRAME_FEATURE_NAMES,
                       id_feature="id"):
    """Builds a frame-level `tf.train.SequenceExample`.

    Args:
      video_id: str or bytes, the record id.
      labels: iterable of int class indices.
      video: float array [T, D_video] (quantized here) or uint8 codes; None
        writes no video feature list (a song alone).
      audio: float array [T, D_audio] (quantized here) or uint8 codes; None
        as video.
      feature_names: the (video, audio) feature-list names.
      id_feature: the context key of the id ("video_id" in the 2017
        release).

    Returns:
      A `tf.train.SequenceExample`.
    """
    context = tf.train.Features(feature={
        id_feature: _bytes_feature([_as_bytes(video_id)]),
        "labels": _int64_feature([int(l) for l in labels]),
    })
    lists = {}
    for name, frames in zip(feature_names, (video, audio)):
        if frames is None:
            continue
        frames = np.asarray(frames)
        codes = frames if frames.dtype == np.uint8 else features.quantize(frames)
        lists[name] = tf.train.FeatureList(
            feature=[_bytes_feature([row.tobytes()]) for row in codes])
    return tf.train.SequenceExample(
        context=context,
        feature_lists=tf.train.FeatureLists(feature_list=lists))


def make_video_example(video_id, labels, video, audio,
                       feature_names=features.VIDEO_FEATURE_NAMES,
                       id_feature="id"):
    """Builds a video-level `tf.train.Example` with float features (the id
    under `id_feature`, as `make_frame_example`)."""
    feature = {
        id_feature: _bytes_feature([_as_bytes(video_id)]),
        "labels": _int64_feature([int(l) for l in labels]),
    }
    for name, values in zip(feature_names, (video, audio)):
        feature[name] = _float_feature(
            np.asarray(values, dtype=np.float32).ravel().tolist())
    return tf.train.Example(features=tf.train.Features(feature=feature))


def file_sha256(path, block=1 << 22):
    """The sha256 hex digest of a file, local or any tf.io.gfile path: what
    the manifests of written shards and indexes record."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while True:
            data = f.read(block)
            if not data:
                return digest.hexdigest()
            digest.update(data)


def shard_path(output_dir, prefix, index, num_shards,
               extension=".tfrecord"):
    """`output_dir/prefix-00000-of-00008.tfrecord` (or another extension)."""
    return os.path.join(
        output_dir, f"{prefix}-{index:05d}-of-{num_shards:05d}{extension}")


class ShardedRecordWriter:
    """Writes serialized records round-robin into `num_shards` TFRecord files.

    Records go to shards in the order they are written, so the same input
    sequence always gives byte-identical shards.

    Example:

    >>> with ShardedRecordWriter("/tmp/out", "train", num_shards=4) as w:
    ...     w.write(make_frame_example("abcd", [3], video, audio))
    """

    def __init__(self, output_dir, prefix, num_shards):
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        os.makedirs(output_dir, exist_ok=True)
        self.paths = [shard_path(output_dir, prefix, i, num_shards)
                      for i in range(num_shards)]
        self._writers = None
        self.num_records = 0

    def __enter__(self):
        self._writers = [tf.io.TFRecordWriter(p) for p in self.paths]
        return self

    def write(self, record):
        """Writes one record: a proto or its serialized bytes."""
        if not isinstance(record, bytes):
            record = record.SerializeToString()
        self._writers[self.num_records % len(self._writers)].write(record)
        self.num_records += 1

    def __exit__(self, *exc_info):
        for writer in self._writers:
            writer.close()
        self._writers = None
        return False
