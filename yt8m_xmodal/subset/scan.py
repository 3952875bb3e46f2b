"""The subset's input: the first pass over each file, and reading a kept
record back by its byte offset in the second.

`scan_or_skip` summarizes one file's records with TF ops on batches (ids,
labels, frame counts, value checks, hashes), applies the per-record rules and
keeps a compact `Scan` of the candidates: hashes and offsets, no features.
`RecordFetcher` reads a candidate back and checks it is the record scanned.
"""

import array
import collections
import hashlib

import numpy as np
import tensorflow as tf

from yt8m_xmodal import features
from yt8m_xmodal import readers
from yt8m_xmodal import tfrecord
from yt8m_xmodal.errors import ConfigError, DataError
from yt8m_xmodal.subset.rules import (
    FEATURE_MAX, FEATURE_MIN, HASH_BYTES, RANGE_TOLERANCE, frame_drop_reason,
    hash64, id_key, record_digest, selected_labels, video_drop_reason)

# Records per parsed batch: a frame-level record is ~400 KB, a video-level
# one ~5 KB, so a batch stays within a few tens of MB at either level. Each
# batch pays a fixed ~1 ms of eager op calls: at video level, where parsing
# a record takes microseconds, a file (300-1,600 records) is one or two.
_FRAME_BATCH_SIZE = 32
_VIDEO_BATCH_SIZE = 1024
_MAX_OPEN_FILES = 32


class InputError(DataError, ConfigError):
    """Bad input data, in a message that also names the arguments it was read
    with: a `DataError`, whose `{field}` places render as `ConfigError`'s."""


# ----------------------------------------------------------------------------
# Files


class RecordFetcher:
    """Reads single records back by byte offset, keeping a few files open."""

    def __init__(self, paths):
        self._paths = paths
        self._open = collections.OrderedDict()

    def read(self, file_index, offset, length, digest):
        path = self._paths[file_index]
        f = self._open.pop(file_index, None)
        if f is None:
            f = tf.io.gfile.GFile(path, "rb")
            if len(self._open) >= _MAX_OPEN_FILES:
                self._open.popitem(last=False)[1].close()
        self._open[file_index] = f
        try:
            data = tfrecord.read_record(f, path, offset)
        except DataError:
            data = None
        if (data is None or len(data) != length
                or hashlib.sha256(data).digest()[:HASH_BYTES] != digest):
            raise DataError(
                f"{path}: the record at byte {offset} is not the one read in "
                "the first pass; the file changed during the run or is not an "
                "uncompressed TFRecord file")
        return data

    def close(self):
        for f in self._open.values():
            f.close()
        self._open.clear()


# ----------------------------------------------------------------------------
# First pass: per-record summaries, computed by TF ops on batches of records


def _with_id_feature(spec, id_feature):
    """A parse spec reading the id from `id_feature` (2017: video_id)."""
    spec = dict(spec)
    spec[id_feature] = spec.pop("id")
    return spec


def frame_summary_fn(feature_names, feature_sizes, id_feature="id"):
    video_name, audio_name = feature_names
    video_size, audio_size = feature_sizes
    sequence_spec = features.frame_sequence_features(feature_names)
    context_spec = _with_id_feature(features.context_features(), id_feature)

    def summarize(serialized):
        context, lists, lengths = tf.io.parse_sequence_example(
            serialized, context_features=context_spec,
            sequence_features=sequence_spec)
        video, audio = lists[video_name], lists[audio_name]
        video_frames, audio_frames = lengths[video_name], lengths[audio_name]
        # The batch pads each record's frames to the longest with b"".
        video_pad = ~tf.sequence_mask(video_frames, tf.shape(video)[1])
        audio_pad = ~tf.sequence_mask(audio_frames, tf.shape(audio)[1])

        def all_frames(condition, pad):
            return tf.reduce_all(condition | pad, axis=1)

        return {
            "id": context[id_feature],
            "labels": context["labels"],
            "video_frames": video_frames,
            "audio_frames": audio_frames,
            "sizes_ok": all_frames(tf.strings.length(video) == video_size,
                                   video_pad)
                        & all_frames(tf.strings.length(audio) == audio_size,
                                     audio_pad),
            # Comparing the raw frame bytes avoids decoding; identical bytes
            # are identical dequantized vectors.
            "audio_constant": all_frames(audio == audio[:, :1], audio_pad),
        }
    return summarize


def video_summary_fn(feature_names, feature_sizes, id_feature="id"):
    video_name, audio_name = feature_names
    spec = _with_id_feature(
        features.video_level_features(feature_names, feature_sizes),
        id_feature)

    def in_range(x):
        return tf.reduce_all(
            tf.math.is_finite(x) & (x >= FEATURE_MIN - RANGE_TOLERANCE)
            & (x <= FEATURE_MAX + RANGE_TOLERANCE), axis=1)

    def summarize(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        video, audio = parsed[video_name], parsed[audio_name]
        return {
            "id": parsed[id_feature],
            "labels": parsed["labels"],
            "values_ok": in_range(video) & in_range(audio),
            "audio": audio,
        }
    return summarize


def _row_lists(sparse, num_rows):
    """Each row's values of a [num_rows, n] SparseTensor, in order, as
    lists (the parsers' VarLenFeature output, row-major)."""
    values = sparse.values.numpy().tolist()
    ends = np.cumsum(np.bincount(sparse.indices[:, 0].numpy(),
                                 minlength=num_rows)).tolist()
    return [values[start:end] for start, end in zip([0] + ends, ends)]


class Scan:
    """What the first pass remembers: compact per-record hashes, no features."""

    def __init__(self):
        self.ids = []
        self.keys = array.array("Q")
        self.digests = array.array("Q")
        self.audio_hashes = array.array("Q")
        self.files = array.array("I")
        self.offsets = array.array("Q")
        self.lengths = array.array("Q")
        self.labels = []
        self._label_tuples = {}
        # Video level: one (audio hash, id key) pair per readable record.
        self.audio_pairs = array.array("Q")
        self.dropped = collections.Counter()
        self.records_read = 0

    def add_candidate(self, video_id, key, digest, audio_hash, file_index,
                      offset, length, labels):
        self.ids.append(video_id)
        self.keys.append(key)
        self.digests.append(digest)
        self.audio_hashes.append(audio_hash)
        self.files.append(file_index)
        self.offsets.append(offset)
        self.lengths.append(length)
        # Most videos share a few label combinations; store each tuple once.
        labels = tuple(labels)
        self.labels.append(self._label_tuples.setdefault(labels, labels))

    def extend(self, other):
        self.ids.extend(other.ids)
        for name in ("keys", "digests", "audio_hashes", "files", "offsets",
                     "lengths", "audio_pairs"):
            getattr(self, name).extend(getattr(other, name))
        for labels in other.labels:
            self.labels.append(self._label_tuples.setdefault(labels, labels))
        self.dropped.update(other.dropped)
        self.records_read += other.records_read

    def __len__(self):
        return len(self.ids)


def _scan_file(path, file_index, frame_features, summarize, selected,
               min_frames):
    """Scans one file; returns a `Scan` for it. Raises tf.errors.OpError."""
    scan = Scan()
    offset = 0
    for serialized in readers.record_batches(
            path, _FRAME_BATCH_SIZE if frame_features else _VIDEO_BATCH_SIZE):
        batch = summarize(serialized)
        video_ids = batch["id"].numpy()
        labels = _row_lists(batch["labels"], len(serialized))
        if frame_features:
            video_frames = batch["video_frames"].numpy()
            audio_frames = batch["audio_frames"].numpy()
            sizes_ok = batch["sizes_ok"].numpy()
            audio_constant = batch["audio_constant"].numpy()
        else:
            values_ok = batch["values_ok"].numpy()
            audio = batch["audio"].numpy()
        for i, record in enumerate(serialized):
            record_offset = offset
            offset += len(record) + tfrecord.FRAMING_BYTES
            scan.records_read += 1
            video_id = video_ids[i]
            key = id_key(video_id)
            if frame_features:
                if not sizes_ok[i]:
                    raise DataError(
                        f"record id {video_id.decode(errors='replace')!r} "
                        "has frames whose byte length is not the feature size")
                audio_hash = 0
            else:
                audio_hash = hash64(audio[i].tobytes())
                scan.audio_pairs.append(audio_hash)
                scan.audio_pairs.append(key)
            chosen = selected_labels(labels[i], selected)
            if not chosen:
                reason = "not_selected"
            elif frame_features:
                reason = frame_drop_reason(video_frames[i], audio_frames[i],
                                           audio_constant[i], min_frames)
            else:
                reason = video_drop_reason(values_ok[i])
            if reason:
                scan.dropped[reason] += 1
                continue
            scan.add_candidate(video_id, key, record_digest(record),
                               audio_hash, file_index, record_offset,
                               len(record), chosen)
    shortfall = tfrecord.shard_shortfall(path, offset,
                                         tf.io.gfile.stat(path).length)
    if shortfall:
        raise DataError(shortfall)
    return scan



def scan_or_skip(args, path, file_index, summarize=None):
    """Pass 1 over one file: returns (its `Scan`, None), or with
    `args.skip_corrupt` (None, {"file": path, "error": text}) for a file that
    cannot be read, which is then skipped as a whole.

    Raises:
      InputError: naming the file, for a file that cannot be read, unless
        `args.skip_corrupt`.
    """
    if summarize is None:
        summarize = args.summarize_fn()
    try:
        return _scan_file(path, file_index, args.frame_features, summarize,
                          frozenset(args.selection.indices),
                          args.min_frames), None
    except (tf.errors.OpError, DataError, UnicodeDecodeError) as e:
        text = (str(e) if isinstance(e, DataError)
                else readers.tf_error_detail(readers.tf_error_message(e)))
        if not args.skip_corrupt:
            raise InputError(
                f"cannot read {path} as {args.level}-level YouTube-8M "
                f"records: {text} (read with {{feature_names}}, "
                "{feature_sizes}); set {skip_corrupt} to skip unreadable "
                "files", **args.read_with, skip_corrupt=True) from None
        return None, {"file": path, "error": text}
