"""Damaged shards for tests/test_reliability.py.

One mutant of each kind of damage, made deterministically from a shard
whose records this module wrote itself: the byte offset of every record
follows from the lengths of the serialized records (TFRecord adds 16 bytes
around each), so the damage lands where it is meant to without reading the
file back. Each mutant says what a reader must make of it.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from conftest import TINY_FEATURE_SIZES
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import readers
from yt8m_xmodal import tfrecord
from yt8m_xmodal import writers

MAX_FRAMES = 40
NUM_CLASSES = 4
RECORDS = 6
# The record each mutant damages: two intact records come before it.
DAMAGED = 2


def example(rng, video_id, frame_features, sizes=TINY_FEATURE_SIZES):
    """A random record of the trained fixture's shape (4 classes, <= 40
    frames); `sizes` other than the fixture's make a record of the wrong
    feature size."""
    labels = sorted({int(x) for x in rng.integers(0, NUM_CLASSES, 2)})
    video_size, audio_size = sizes
    if not frame_features:
        # Inside the range 8-bit codes dequantize to, so the subset tool
        # keeps the record.
        means = rng.uniform(-1.5, 1.5, video_size + audio_size)
        return writers.make_video_example(video_id, labels,
                                          means[:video_size],
                                          means[video_size:])
    codes = rng.integers(0, 256, (int(rng.integers(3, 11)),
                                  video_size + audio_size), dtype=np.uint8)
    return writers.make_frame_example(video_id, labels, codes[:, :video_size],
                                      codes[:, video_size:])


def write_records(path, records):
    """Frames serialized records into a TFRecord file; returns its bytes."""
    with tf.io.TFRecordWriter(str(path)) as w:
        for record in records:
            w.write(record)
    with open(path, "rb") as f:
        return f.read()


def reader(frame_features, skip_corrupt=False):
    return readers.reader_for(config_lib.DataConfig(
        frame_features=frame_features, feature_sizes=TINY_FEATURE_SIZES,
        max_frames=MAX_FRAMES, num_classes=NUM_CLASSES),
        skip_corrupt=skip_corrupt)


@dataclasses.dataclass
class Mutant:
    """A damaged copy of the source shard.

    kept: the source ids a reader returns from it with skip_corrupt (for a
      valid shard, also without); None where no mode reads past the damage
      (a record that is not a protobuf fails its batch's parse).
    valid: the file is a well-formed shard (empty, or cut exactly between
      two records): nothing in it says data is missing.
    """

    kind: str
    path: str
    kept: tuple
    valid: bool = False


def _flipped(data, at):
    out = bytearray(data)
    out[at] ^= 0x5A
    return bytes(out)


def make_mutants(out_dir, frame_features, seed=0):
    """Writes the source shard, a good companion shard and one mutant of
    each kind under `out_dir`.

    Returns:
      (source path, good path, source ids, [Mutant]).
    """
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    level = "frame" if frame_features else "video"
    ids = [f"{level}-src-{i}" for i in range(RECORDS)]
    records = [example(rng, i, frame_features).SerializeToString()
               for i in ids]
    source = os.path.join(out_dir, f"{level}-source.tfrecord")
    data = write_records(source, records)
    good = os.path.join(out_dir, f"{level}-good.tfrecord")
    write_records(good, [example(rng, f"{level}-good-{i}", frame_features)
                         .SerializeToString() for i in range(RECORDS)])
    start = sum(len(r) + tfrecord.FRAMING_BYTES for r in records[:DAMAGED])
    body = start + tfrecord.HEADER_BYTES
    end = body + len(records[DAMAGED]) + tfrecord.CRC_BYTES
    before, all_but_one = tuple(ids[:DAMAGED]), tuple(
        i for n, i in enumerate(ids) if n != DAMAGED)

    def replaced(record):
        return records[:DAMAGED] + [record] + records[DAMAGED + 1:]

    wrong_size = example(rng, ids[DAMAGED], frame_features,
                         (TINY_FEATURE_SIZES[0] + 1, TINY_FEATURE_SIZES[1]))
    cases = {
        # Framing damage: a skip keeps the records before it.
        "cut_in_record": (data[:body + len(records[DAMAGED]) // 2], before),
        "cut_in_header": (data[:start + 5], before),
        "flip_length": (_flipped(data, start + 3), before),
        "flip_length_crc": (_flipped(data, start + 9), before),
        "flip_payload": (_flipped(data, body + len(records[DAMAGED]) // 2),
                         before),
        "flip_data_crc": (_flipped(data, end - 2), before),
        "random_bytes": (rng.integers(0, 256, 700, np.uint8).tobytes(), ()),
        # An interrupted append: a valid shard and part of a header.
        "trailing_bytes": (data + bytes(5), tuple(ids)),
        # CRC-valid records with bad content: only that record is lost.
        "wrong_feature_size": (replaced(wrong_size.SerializeToString()),
                               all_but_one),
        "not_a_protobuf": (replaced(b"\x86\xff\x12\x99\x01\x02"), None),
    }
    if not frame_features:
        bad = example(rng, ids[DAMAGED], False)
        bad.features.feature["mean_rgb"].float_list.value[3] = np.nan
        cases["non_finite"] = (replaced(bad.SerializeToString()), all_but_one)
    mutants = []
    for kind, (content, kept) in cases.items():
        path = os.path.join(out_dir, f"{level}-{kind}.tfrecord")
        if isinstance(content, list):
            write_records(path, content)
        else:
            with open(path, "wb") as f:
                f.write(content)
        mutants.append(Mutant(kind, path, kept))
    for kind, content, kept in (("cut_at_boundary", data[:start], before),
                                ("zero_length", b"", ())):
        path = os.path.join(out_dir, f"{level}-{kind}.tfrecord")
        with open(path, "wb") as f:
            f.write(content)
        mutants.append(Mutant(kind, path, kept, valid=True))
    return source, good, ids, mutants
