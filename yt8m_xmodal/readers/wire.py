"""The frame-level reader's fast path: frames read straight out of the
protobuf wire format of regular records.

`locate_lists` finds where each record's two feature lists are,
`regular_headers_ok` checks every frame's header, and `regular_frames` cuts
and dequantizes the frames in one XLA pass. A record of any other layout is
left to the general parse. The layout and why: docs/design.md, "Readers".
"""

import numpy as np
import tensorflow as tf

from yt8m_xmodal import features

# --- the regular frame-level layout -----------------------------------------
#
# A SequenceExample serialized by protobuf is its context then its feature
# lists, each a length-delimited field: tag byte, varint length, bytes.
#
#   SequenceExample  0x0a context (a Features), 0x12 feature_lists
#   FeatureLists     0x0a map entry per list: 0x0a key, 0x12 FeatureList
#   FeatureList      0x0a Feature per frame
#   Feature          0x0a BytesList
#   BytesList        0x0a the frame's bytes
#
# Every frame of a list with D bytes per frame is therefore the same few
# header bytes followed by D data bytes, and the list is one block with a
# fixed stride. Locating the two blocks takes a handful of varints per
# record; everything else about the layout is checked, and a record that
# deviates (another field order, extra fields or lists, a missing list,
# another frame size) is left to the general parse.

_TAG_FIELD_1 = 0x0A  # field 1, length-delimited
_TAG_FIELD_2 = 0x12  # field 2, length-delimited
# A varint of up to 5 bytes holds any length below 2**35.
_MAX_VARINT_BYTES = 5


def _varint_bytes(value):
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frame_header(size):
    """The bytes before each frame's data in a list of `size`-byte frames,
    as a uint8 array: Feature tag and length, BytesList tag and length,
    value tag and length."""
    value = bytes([_TAG_FIELD_1]) + _varint_bytes(size)
    bytes_list = bytes([_TAG_FIELD_1]) + _varint_bytes(len(value) + size)
    feature = bytes([_TAG_FIELD_1]) + _varint_bytes(
        len(bytes_list) + len(value) + size)
    return np.frombuffer(feature + bytes_list + value, np.uint8)


def _window(serialized, length, pos, width):
    """[B, width] uint8: each record's bytes from `pos`, zero past its end."""
    pos = tf.minimum(pos, length)
    widths = tf.fill(tf.shape(pos), tf.constant(width, tf.int64))
    return tf.io.decode_raw(tf.strings.substr(serialized, pos, widths),
                            tf.uint8, fixed_length=width)


def _byte_at(window, at):
    """window[b, at[b]] as int64 (0 past the window)."""
    width = tf.shape(window, tf.int64)[1]
    byte = tf.gather(window, tf.minimum(at, width - 1), batch_dims=1)
    return tf.where(at < width, tf.cast(byte, tf.int64), 0)


def _varint(window, at):
    """Decodes the varint at offset `at[b]` of each window row.

    Returns (value, offset after it, ok); ok is False when it runs past the
    window or is longer than `_MAX_VARINT_BYTES`.
    """
    offsets = at[:, None] + tf.range(_MAX_VARINT_BYTES, dtype=tf.int64)
    width = tf.shape(window, tf.int64)[1]
    raw = tf.gather(window, tf.minimum(offsets, width - 1), batch_dims=1)
    raw = tf.cast(raw, tf.int64)
    more = raw >= 0x80
    # Byte i belongs to the varint when every byte before it continues it.
    used = tf.math.cumprod(tf.cast(more, tf.int64), axis=1, exclusive=True)
    value = tf.reduce_sum(
        used * (raw % 0x80)
        * (0x80 ** tf.range(_MAX_VARINT_BYTES, dtype=tf.int64)), axis=1)
    count = tf.reduce_sum(used, axis=1)
    ok = ~tf.reduce_all(more, axis=1) & (at + count <= width)
    return value, at + count, ok


def _map_entry(window, at):
    """One FeatureLists map entry at offset `at` of each window row.

    Returns a dict of offsets in the window: key (start), key_length,
    list (start of the FeatureList's frames), list_length, end; and ok,
    False unless the entry is exactly a key then a FeatureList.
    """
    ok = _byte_at(window, at) == _TAG_FIELD_1
    entry_length, at, varint_ok = _varint(window, at + 1)
    ok &= varint_ok
    entry_end = at + entry_length
    ok &= _byte_at(window, at) == _TAG_FIELD_1
    key_length, key, varint_ok = _varint(window, at + 1)
    ok &= varint_ok
    # The window is wide enough for the longest expected key only.
    key_length = tf.minimum(key_length, tf.shape(window, tf.int64)[1])
    at = key + key_length
    ok &= _byte_at(window, at) == _TAG_FIELD_2
    list_length, start, varint_ok = _varint(window, at + 1)
    ok &= varint_ok & (start + list_length == entry_end)
    return {"key": key, "key_length": key_length, "list": start,
            "list_length": list_length, "end": entry_end, "ok": ok}


def locate_lists(serialized, feature_names, layout):
    """Where each record's video and audio frames are, if it is regular.

    A record is regular when it is exactly: the context, then the feature
    lists holding exactly two entries, the video and audio names (either
    order), each a whole number of `layout` strides. Whether each frame
    header matches is checked on the decoded bytes (`regular_headers_ok`).

    Returns a dict of [B] tensors: regular (bool), context_end (bytes of
    the context field), video_start, video_frames, audio_start,
    audio_frames (int64).
    """
    length = tf.cast(tf.strings.length(serialized), tf.int64)
    longest_key = max(len(name.encode()) for name in feature_names)
    # An entry's tags and varints, and its key.
    entry_width = 3 * (1 + _MAX_VARINT_BYTES) + longest_key

    head = _window(serialized, length, tf.zeros_like(length),
                   1 + _MAX_VARINT_BYTES)
    regular = tf.cast(head[:, 0], tf.int64) == _TAG_FIELD_1
    context_length, context_start, ok = _varint(head, tf.ones_like(length))
    regular &= ok
    context_end = context_start + context_length

    lists = _window(serialized, length, context_end,
                    1 + _MAX_VARINT_BYTES + entry_width)
    regular &= _byte_at(lists, tf.zeros_like(length)) == _TAG_FIELD_2
    lists_length, at, ok = _varint(lists, tf.ones_like(length))
    regular &= ok & (context_end + at + lists_length == length)
    first = _map_entry(lists, at)
    first_end = context_end + first["end"]
    second = _map_entry(
        _window(serialized, length, first_end, entry_width),
        tf.zeros_like(length))
    regular &= first["ok"] & second["ok"] & (first_end + second["end"]
                                             == length)

    def key(entry, base):
        return tf.strings.substr(
            serialized, tf.minimum(base + entry["key"], length),
            entry["key_length"])

    first_key, second_key = key(first, context_end), key(second, first_end)
    video_name, audio_name = feature_names
    video_first = (first_key == video_name) & (second_key == audio_name)
    regular &= video_first | ((first_key == audio_name)
                              & (second_key == video_name))
    located = {"context_end": context_end}
    for view, in_first in (("video", video_first), ("audio", ~video_first)):
        start = tf.where(in_first, context_end + first["list"],
                         first_end + second["list"])
        list_length = tf.where(in_first, first["list_length"],
                               second["list_length"])
        stride = layout[view][1]
        regular &= list_length % stride == 0
        located[view + "_start"] = tf.minimum(start, length)
        located[view + "_frames"] = list_length // stride
    located["regular"] = regular
    return located


def _strided(block, stride):
    """A list's bytes [B, T * stride] as [B, T, stride] frames."""
    return tf.reshape(block, [tf.shape(block)[0], -1, stride])


@tf.function(jit_compile=True)
def regular_headers_ok(block, frames, header, stride):
    """Whether the first `frames` [B] frames of each list's bytes (uint8
    [B, T * stride]) start with `header` (bool [B])."""
    headers = _strided(block, stride)[:, :, :header.shape[0]]
    in_list = (tf.range(tf.shape(headers, tf.int64)[1])
               < tf.cast(frames, tf.int64)[:, None])
    return tf.reduce_all((headers == header) | ~in_list[:, :, None],
                         axis=[1, 2])


@tf.function(jit_compile=True)
def regular_frames(block, mask, header, stride, dequantize=True):
    """Frames [B,T,D] float32 of each list's bytes (uint8 [B, T * stride]),
    zero where `mask` [B,T] is off.

    XLA fuses the strided slice of the frame data with the dequantization:
    one pass from the list bytes to the output, as the frame reader's
    `_dequantize_frames`. `dequantize=False` gives the uint8 codes instead
    (bench/bench_reader.py times the two steps apart with it).
    """
    codes = _strided(block, stride)[:, :, header.shape[0]:]
    if not dequantize:
        return tf.where(mask[:, :, None], codes, tf.zeros_like(codes))
    return tf.where(mask[:, :, None], features.dequantize(codes), 0.0)
