"""TFRecord framing, read with plain file reads.

Each record is framed (tensorflow/core/lib/io/record_writer.cc) as

    uint64 length | uint32 masked CRC32C of the length | data | uint32 masked CRC32C of the data

all little-endian. TensorFlow's readers check the CRCs in C++; this module
does what they cannot: say where each record lies (offsets), count records
without parsing them, read one record back at an offset, and tell a shard
whose readable records do not cover it (TFRecordDataset ends quietly at a cut
inside a length header). No TensorFlow op runs here.

Functions take an open binary file (`open`, `tf.io.gfile.GFile`,
`io.BytesIO`) and the path that errors name. The length's CRC is always
checked: it is 8 bytes, and it tells a misread offset or a file that is not
a TFRecord. The data's CRC, pure Python here, is checked on request.
"""

import struct

from yt8m_xmodal.errors import DataError

LENGTH_BYTES = 8
CRC_BYTES = 4
# The length and its CRC, before the data.
HEADER_BYTES = LENGTH_BYTES + CRC_BYTES
# Bytes a record adds to its data: the header and the data's CRC.
FRAMING_BYTES = HEADER_BYTES + CRC_BYTES
# Added to the rotated CRC so that a CRC of data holding CRCs stays strong
# (tensorflow/core/lib/hash/crc32c.h, kMaskDelta).
_MASK_DELTA = 0xa282ead8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
# CRC-32C (Castagnoli), reflected polynomial (RFC 3720).
_POLYNOMIAL = 0x82F63B78


def _crc_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_POLYNOMIAL if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc32c(data):
    """The CRC-32C of `data` (bytes), as an unsigned int."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    """The CRC TFRecord stores: CRC-32C rotated right by 15, plus a delta."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF)


def frame(data):
    """`data` framed as one TFRecord, the bytes tf.io.TFRecordWriter writes."""
    length = _LENGTH.pack(len(data))
    return b"".join((length, _CRC.pack(masked_crc32c(length)), data,
                     _CRC.pack(masked_crc32c(data))))


def _read_length(f, path, offset, size):
    """The data length of the record whose header starts at `offset` (the
    file's position), or None at the end of the file."""
    header = f.read(HEADER_BYTES)
    if not header:
        return None
    if len(header) < HEADER_BYTES:
        raise DataError(f"{path}: the record at byte {offset} is truncated "
                        f"inside its length header ({len(header)} of "
                        f"{HEADER_BYTES} bytes)")
    length = header[:LENGTH_BYTES]
    if _CRC.unpack_from(header, LENGTH_BYTES)[0] != masked_crc32c(length):
        raise DataError(f"{path}: the record at byte {offset} has a corrupt "
                        "length header (its CRC does not match); the file "
                        "is damaged or not an uncompressed TFRecord file")
    length, = _LENGTH.unpack(length)
    if size is not None and offset + FRAMING_BYTES + length > size:
        raise DataError(f"{path}: the record at byte {offset} is truncated: "
                        f"it needs {FRAMING_BYTES + length} bytes, the file "
                        f"has {size - offset} from there")
    return length


def _read_data(f, path, offset, length, check_data):
    data = f.read(length)
    footer = f.read(CRC_BYTES)
    if len(data) < length or len(footer) < CRC_BYTES:
        raise DataError(f"{path}: the record at byte {offset} is truncated: "
                        f"it needs {FRAMING_BYTES + length} bytes, the file "
                        f"has {HEADER_BYTES + len(data) + len(footer)} from "
                        "there")
    if check_data and _CRC.unpack(footer)[0] != masked_crc32c(data):
        raise DataError(f"{path}: the record at byte {offset} is corrupt "
                        "(its data CRC does not match)")
    return data


def read_record(f, path, offset, size=None, check_data=False):
    """The data of the record framed at byte `offset` of `f`.

    Args:
      f: an open binary file.
      path: its name, for errors.
      offset: where the record's header starts.
      size: the file size, if known: a length reaching past it is caught
        before the read (a file that is not a TFRecord gives any length).
      check_data: also check the data's CRC (pure Python: slow on large
        records).

    Raises:
      DataError: naming `path` and `offset`, when no whole record with a
        valid length CRC starts there.
    """
    f.seek(offset)
    length = _read_length(f, path, offset, size)
    if length is None:
        raise DataError(f"{path}: no record at byte {offset}: the file ends "
                        "there")
    return _read_data(f, path, offset, length, check_data)


def iter_records(f, path, size=None, check_data=False):
    """Yields (offset, data) of each record of `f`, from its position 0.

    Raises:
      DataError: as `read_record`, at the first record that is not whole.
    """
    offset = 0
    while True:
        length = _read_length(f, path, offset, size)
        if length is None:
            return
        yield offset, _read_data(f, path, offset, length, check_data)
        offset += FRAMING_BYTES + length


def iter_offsets(f, path, size):
    """Yields (offset, data length) of each record of `f`, hopping from
    header to header without reading the data.

    Raises:
      DataError: as `read_record`, at the first record that is not whole.
    """
    offset = 0
    while offset < size:
        f.seek(offset)
        length = _read_length(f, path, offset, size)
        if length is None:
            raise DataError(f"{path}: the file is shorter than its size "
                            f"{size} (it ends at byte {offset})")
        yield offset, length
        offset += FRAMING_BYTES + length


def shard_shortfall(path, bytes_read, size):
    """Why a shard's readable records do not cover it, or None if they do.

    TFRecordDataset ends quietly at a cut inside a record's length header (and
    `ignore_errors` at any unreadable record), losing the records after it:
    only comparing the framed bytes read with the file size tells.

    Args:
      path: the shard.
      bytes_read: the records' lengths plus FRAMING_BYTES each.
      size: the file size in bytes.
    """
    if bytes_read == size:
        return None
    return (f"shard {path} is truncated or corrupt: its readable records "
            f"cover {bytes_read} of its {size} bytes")
