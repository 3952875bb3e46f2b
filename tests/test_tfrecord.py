"""TFRecord framing, checked against tf.io.TFRecordWriter and a bitwise CRC."""

import io
import re

import numpy as np
import pytest
import tensorflow as tf

from yt8m_xmodal import tfrecord
from yt8m_xmodal.errors import DataError

RECORDS = [b"", b"a", b"123456789", bytes(range(256)) * 3,
           np.random.default_rng(0).bytes(5000)]


def _bitwise_crc32c(data):
    """CRC-32C one bit at a time (RFC 3720), sharing nothing with the
    table-driven code under test."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _written(tmp_path, records):
    path = str(tmp_path / "r.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for record in records:
            w.write(record)
    with open(path, "rb") as f:
        return path, f.read()


def test_crc32c_matches_the_standard_check_value_and_a_bitwise_crc():
    # The catalogued check value of CRC-32C: the CRC of b"123456789".
    assert tfrecord.crc32c(b"123456789") == 0xE3069283
    for data in RECORDS:
        assert tfrecord.crc32c(data) == _bitwise_crc32c(data)


def test_frame_is_what_tf_record_writer_writes(tmp_path):
    _, written = _written(tmp_path, RECORDS)
    assert b"".join(tfrecord.frame(r) for r in RECORDS) == written


def test_offsets_and_records_walk_a_tf_written_file(tmp_path):
    path, data = _written(tmp_path, RECORDS)
    starts = np.cumsum([0] + [len(r) + tfrecord.FRAMING_BYTES
                              for r in RECORDS])
    with open(path, "rb") as f:
        assert list(tfrecord.iter_offsets(f, path, len(data))) == [
            (int(s), len(r)) for s, r in zip(starts, RECORDS)]
    with open(path, "rb") as f:
        assert list(tfrecord.iter_records(f, path, len(data),
                                          check_data=True)) == [
            (int(s), r) for s, r in zip(starts, RECORDS)]
    with open(path, "rb") as f:
        for start, record in zip(starts, RECORDS):
            assert tfrecord.read_record(f, path, int(start), len(data),
                                        check_data=True) == record
    assert tfrecord.shard_shortfall(path, int(starts[-1]), len(data)) is None
    assert tfrecord.shard_shortfall(path, int(starts[2]), len(data)) == (
        f"shard {path} is truncated or corrupt: its readable records cover "
        f"{starts[2]} of its {len(data)} bytes")


def _flipped(data, at):
    out = bytearray(data)
    out[at] ^= 0x5A
    return bytes(out)


@pytest.mark.parametrize("damage, message", [
    ("cut_in_header", "truncated inside its length header"),
    ("cut_in_data", "is truncated: it needs"),
    ("flip_length", "corrupt length header"),
    ("flip_length_crc", "corrupt length header"),
    ("flip_data", "data CRC does not match"),
    ("flip_data_crc", "data CRC does not match"),
])
def test_damage_names_the_file_and_the_record_offset(tmp_path, damage,
                                                     message):
    _, data = _written(tmp_path, RECORDS)
    start = sum(len(r) + tfrecord.FRAMING_BYTES for r in RECORDS[:3])
    body = start + tfrecord.HEADER_BYTES
    end = body + len(RECORDS[3]) + tfrecord.CRC_BYTES
    damaged = {
        "cut_in_header": data[:start + 5],
        "cut_in_data": data[:body + 10],
        "flip_length": _flipped(data, start + 2),
        "flip_length_crc": _flipped(data, start + tfrecord.LENGTH_BYTES + 1),
        "flip_data": _flipped(data, body + 7),
        "flip_data_crc": _flipped(data, end - 1),
    }[damage]
    path = str(tmp_path / f"{damage}.tfrecord")
    pattern = f"^{re.escape(path)}: the record at byte {start} .*{message}"
    read = []
    with pytest.raises(DataError, match=pattern):
        for offset, record in tfrecord.iter_records(
                io.BytesIO(damaged), path, len(damaged), check_data=True):
            read.append(record)
    assert read == RECORDS[:3]
    with pytest.raises(DataError, match=pattern):
        tfrecord.read_record(io.BytesIO(damaged), path, start, len(damaged),
                             check_data=True)
    if damage.startswith("flip_data"):
        # Data CRCs are checked only on request; hopping reads no data.
        assert len(list(tfrecord.iter_offsets(
            io.BytesIO(damaged), path, len(damaged)))) == len(RECORDS)
    else:
        with pytest.raises(DataError, match=pattern):
            list(tfrecord.iter_offsets(io.BytesIO(damaged), path,
                                       len(damaged)))


def test_a_file_that_is_not_a_tfrecord_is_caught_before_a_huge_read():
    junk = b"\xff" * 64
    with pytest.raises(DataError, match="^junk: the record at byte 0 has a "
                       "corrupt length header"):
        tfrecord.read_record(io.BytesIO(junk), "junk", 0, len(junk))
    # A length whose CRC is right but which runs past the end of the file.
    header = tfrecord.frame(bytes(1000))[:tfrecord.HEADER_BYTES]
    with pytest.raises(DataError, match="^cut: the record at byte 0 is "
                       "truncated: it needs 1016 bytes, the file has 12"):
        tfrecord.read_record(io.BytesIO(header), "cut", 0, len(header))
    with pytest.raises(DataError, match="^empty: no record at byte 0"):
        tfrecord.read_record(io.BytesIO(b""), "empty", 0)
