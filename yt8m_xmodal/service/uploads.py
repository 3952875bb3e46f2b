"""What an uploaded file holds: YT8M records in TFRecord framing, or media.

TFRecord framing is recognised by its first header: an 8-byte little-endian
length whose masked CRC-32C follows it, and which fits in the file. Media
files are recognised by the magic bytes of their container. Anything else is
refused before TensorFlow reads a byte of it.
"""

import os
import struct
import tempfile

import tensorflow as tf

from yt8m_xmodal import formats
from yt8m_xmodal import readers
from yt8m_xmodal import tfrecord
from yt8m_xmodal.errors import DataError

TFRECORD = "tfrecord"
_READ_BATCH = 256
MEDIA = "media"

# (offset, magic bytes, container): the published magic numbers of the
# containers that FFmpeg-based decoders read.
_MEDIA_MAGIC = (
    (0, b"ID3", "MP3"),
    (0, b"OggS", "Ogg"),
    (0, b"fLaC", "FLAC"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (4, b"ftyp", "MP4/M4A/MOV"),
    (0, b"FLV", "FLV"),
    (0, b"\x00\x00\x01\xba", "MPEG program stream"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "ASF/WMA/WMV"),
)
# RIFF containers name their form at byte 8.
_RIFF_FORMS = {b"WAVE": "WAV", b"AVI ": "AVI"}
# AIFF: "FORM" then the form type at byte 8.
_AIFF_FORMS = (b"AIFF", b"AIFC")


def media_container(head):
    """The container named by a file's first bytes, or None."""
    for offset, magic, name in _MEDIA_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_FORMS:
        return _RIFF_FORMS[head[8:12]]
    if head[:4] == b"FORM" and head[8:12] in _AIFF_FORMS:
        return "AIFF"
    # An MPEG audio frame (MP3 without ID3, or AAC in ADTS): 11 sync bits.
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "MPEG audio"
    return None


def tfrecord_length(head):
    """The first record's length when `head` starts with a TFRecord header
    (a length and its checksum), else None."""
    if len(head) < tfrecord.HEADER_BYTES:
        return None
    length, checksum = struct.unpack("<QI", head[:tfrecord.HEADER_BYTES])
    return (length if checksum == tfrecord.masked_crc32c(
        head[:tfrecord.LENGTH_BYTES]) else None)


def kind_of(data, name="the upload"):
    """TFRECORD or MEDIA for an upload's bytes.

    Raises:
      DataError: naming `name`, for an empty file or one that is neither.
    """
    if not data:
        raise DataError(f"{name} is empty")
    length = tfrecord_length(data[:16])
    if length is not None:
        if length + tfrecord.FRAMING_BYTES > len(data):
            raise DataError(f"{name} is a truncated TFRecord: its first "
                            f"record has {length} bytes, the file "
                            f"{len(data)}")
        return TFRECORD
    if media_container(data[:16]):
        return MEDIA
    raise DataError(f"{name} is neither a TFRecord of YT8M records nor a "
                    "media file")


def read_records(data, name="the upload"):
    """The serialized records of a TFRecord file's bytes, each checksum
    checked by TensorFlow's reader.

    Raises:
      DataError: naming `name`, for corrupt or truncated framing or no
        records.
    """
    with tempfile.TemporaryDirectory(prefix="yt8m_xmodal_upload_") as tmp:
        path = os.path.join(tmp, "upload.tfrecord")
        with open(path, "wb") as f:
            f.write(data)
        try:
            serialized = [record for batch in readers.record_batches(
                path, _READ_BATCH) for record in batch]
        except tf.errors.OpError as e:
            first = (e.message or str(e)).strip().splitlines()[0]
            raise DataError(f"{name} is a corrupt or truncated TFRecord: "
                            f"{first}") from None
    if not serialized:
        raise DataError(f"{name} holds no records")
    return serialized


def check_query_records(serialized, data_config, query, gallery,
                        name="the upload"):
    """Raises DataError, naming `name`, unless the first record is a YT8M
    record holding the query modality's features (`query`, "audio" or
    "video") at the model's level; the signature checks every record."""
    fmt = formats.format_of(name, serialized[0])
    if fmt is None:
        raise DataError(f"{name}: its records are not YT8M records (no "
                        "features)")
    names = dict(zip(("video", "audio"), data_config.feature_names))
    if fmt.frame_features == data_config.frame_features:
        if names[query] in fmt.feature_sizes:
            return
        if names[gallery] in fmt.feature_sizes:
            raise DataError(
                f"{name} holds {gallery} records ({names[gallery]!r}), the "
                f"gallery's own modality: send {query} records "
                f"({names[query]!r}) to search the {gallery} gallery")
    level = "frame" if data_config.frame_features else "video"
    raise DataError(
        f"{name} holds {fmt.describe()}; the model reads {level}-level "
        f"records with {names[query]!r} for {query} queries")
