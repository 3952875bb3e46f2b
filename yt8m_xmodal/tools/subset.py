r"""Cuts a reproducible music subset out of YouTube-8M shards.

    python -m yt8m_xmodal.cli.subset --noframe_features \
        --input_data_pattern=/data/yt8m/video/train*.tfrecord \
        --output_dir=/data/yt8m_music --vocabulary_file=/data/yt8m/vocabulary.csv

writes train/validate/test shards in the input's own format (each kept
record's bytes unchanged) and a `manifest.json` of what was kept, dropped and
why. The rules (not_selected, too_short, no_audio_signal,
frame_count_mismatch, bad_values, duplicate_id) and the id-hash split are
pure functions here that the Beam pipeline calls too; the output depends only
on the set of input records. Options: `SubsetConfig`. The rules, the split
and the two passes in full: docs/design.md, "Music subset".
"""

import array
import collections
import dataclasses
import fractions
import functools
import hashlib
import itertools
import json
import math
import os
import re
import sys
import time

import numpy as np
import tensorflow as tf

from yt8m_xmodal import config
from yt8m_xmodal import features
from yt8m_xmodal import progress as progress_lib
from yt8m_xmodal import readers
from yt8m_xmodal import records
from yt8m_xmodal import tfrecord
from yt8m_xmodal import vocabulary
from yt8m_xmodal import writers
from yt8m_xmodal.errors import ConfigError, DataError

SPLITS = ("train", "validate", "test")
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
# YT8M videos are 120-500 s long (YouTube-8M paper, Abu-El-Haija et al.
# 2016, section 3); fewer than 10 one-second frames means a broken record and
# too little time for any audio-video correlation over time.
DEFAULT_MIN_FRAMES = 10
# Two different videos with bit-identical mean audio are re-uploads at most;
# three or more sharing one vector is the silent/missing-track vector.
DEFAULT_REPEATED_AUDIO_MIN_VIDEOS = 3

# Output shards of about this size when --num_shards is not given: large
# enough that the full YT8M does not make tens of thousands of files, small
# enough for parallel readers.
DEFAULT_TARGET_SHARD_MB = 256


@dataclasses.dataclass(frozen=True)
class SubsetConfig(config.FeaturesConfig):
    """The subset's options: the tool (`yt8m-xmodal-subset`) and the Beam
    pipeline (`python -m yt8m_xmodal.pipelines.subset`) take these same
    flags with the same defaults. None: read from the first input record."""

    input_data_pattern: str = config.option(
        "", "Comma-separated globs of YT8M TFRecord files (gs:// works).")
    output_dir: str = config.option(
        "", "Where shards and manifest.json go (gs:// works).")
    frame_features: bool | None = config.option(
        None, "Frame-level input (SequenceExample), else video level. Unset: "
        "the level of the first input record.")
    id_feature: str | None = config.option(
        None, "Context key of the video id: id (2018 release) or video_id "
        "(2017). Unset: the key of the first input record.")
    label_names: tuple[str, ...] = config.option(
        (), "Comma list of vocabulary names to select (needs "
        "--vocabulary_file). Default: the 17 music labels.")
    label_indices: tuple[str, ...] = config.option(
        (), "Comma list of class indices to select.")
    verticals: tuple[str, ...] = config.option(
        (), "Comma list of verticals, e.g. 'Arts & Entertainment', matched "
        "against Vertical1-3 (needs --vocabulary_file).")
    vocabulary_file: str = config.option(
        "", "The official YouTube-8M vocabulary.csv.")
    min_frames: int = config.option(
        DEFAULT_MIN_FRAMES, "Frame level: drop videos with fewer frames.")
    repeated_audio_min_videos: int = config.option(
        DEFAULT_REPEATED_AUDIO_MIN_VIDEOS,
        "Video level: drop videos whose exact audio vector is shared by at "
        "least this many distinct ids.")
    split_fractions: tuple[str, ...] = config.option(
        tuple(map(str, DEFAULT_SPLIT_FRACTIONS)),
        "Train,validate,test fractions of the id hash range.")
    num_shards: int | None = config.option(
        None, "Output shards per split. Unset: enough shards of about "
        "--target_shard_mb for each split.")
    target_shard_mb: float = config.option(
        DEFAULT_TARGET_SHARD_MB,
        "Output shard size when --num_shards is not given.")
    skip_corrupt: bool = config.option(
        False, "Skip unreadable input files (listed in the manifest) instead "
        "of stopping.")
    overwrite: bool = config.option(
        False, "Replace an existing subset in --output_dir.")

    def __post_init__(self):
        for name in ("input_data_pattern", "output_dir"):
            if not getattr(self, name):
                raise ConfigError(f"{{{name}}} is required", **{name: ""})
        if self.target_shard_mb <= 0:
            raise ConfigError("{target_shard_mb} must be positive",
                              target_shard_mb=self.target_shard_mb)

    def arguments(self):
        """The keyword arguments of `check_arguments` (and, with
        input_data_pattern, output_dir and overwrite, of `extract_subset`)."""
        return dict(
            frame_features=self.frame_features,
            feature_names=self.feature_names or None,
            feature_sizes=self.feature_sizes,
            selection=build_selection(
                label_names=self.label_names or None,
                label_indices=self.label_indices or None,
                verticals=self.verticals or None,
                vocabulary_file=self.vocabulary_file or None),
            min_frames=self.min_frames,
            repeated_audio_min_videos=self.repeated_audio_min_videos,
            split_fractions=self.split_fractions, num_shards=self.num_shards,
            skip_corrupt=self.skip_corrupt, id_feature=self.id_feature)


def shard_counts(split_bytes, num_shards=None,
                 target_shard_mb=DEFAULT_TARGET_SHARD_MB):
    """Shards per split: `num_shards` for each, or enough shards of about
    `target_shard_mb` for each split's bytes."""
    if num_shards:
        return {split: num_shards for split in SPLITS}
    target = target_shard_mb * 2**20
    return {split: max(1, math.ceil(split_bytes.get(split, 0) / target))
            for split in SPLITS}


# Range of dequantized 8-bit codes (features.py): byte 0 and byte 255.
FEATURE_MIN = features.DEQUANTIZE_BIAS
FEATURE_MAX = 255 * features.DEQUANTIZE_SCALAR + features.DEQUANTIZE_BIAS
# Means over frames are computed in float32 and may round past the ends.
RANGE_TOLERANCE = 1e-3

FRAME_DROP_REASONS = ("not_selected", "too_short", "no_audio_signal",
                      "frame_count_mismatch", "duplicate_id")
VIDEO_DROP_REASONS = ("not_selected", "bad_values", "no_audio_signal",
                      "duplicate_id")

_HASH_BYTES = 8
# Records per parsed batch: a frame-level record is ~400 KB, a video-level
# one ~5 KB, so a batch stays within a few tens of MB at either level. Each
# batch pays a fixed ~1 ms of eager op calls: at video level, where parsing
# a record takes microseconds, a file (300-1,600 records) is one or two.
_FRAME_BATCH_SIZE = 32
_VIDEO_BATCH_SIZE = 1024
_MAX_OPEN_FILES = 32
MANIFEST_NAME = "manifest.json"
TOOL_COMMAND = "python -m yt8m_xmodal.cli.subset"


class InputError(DataError, ConfigError):
    """Bad input data, in a message that also names the arguments it was read
    with: a `DataError`, whose `{field}` places render as `ConfigError`'s."""


_DUPLICATE_RULE = (
    "records with the same id that pass every other rule: the one whose "
    "serialized bytes have the smallest SHA-256 (first 8 bytes, big-endian) "
    "is kept, the others are dropped as duplicate_id")


def _split_rule(split_fractions):
    return (
        "key(id) = first 8 bytes of SHA-256(id bytes), big-endian unsigned; "
        f"train if key < floor({split_fractions[0]} * 2**64), validate if "
        f"key < floor(({split_fractions[0]} + {split_fractions[1]}) * 2**64), "
        "else test; within a split records are ordered by (key, id) and "
        "dealt round-robin to the shards")


# ----------------------------------------------------------------------------
# Selection


@dataclasses.dataclass(frozen=True)
class LabelSelection:
    """Which labels make a video selected.

    Attributes:
      indices: sorted tuple of class indices; a video is selected if it
        carries at least one of them.
      names: dict index -> name (empty without a vocabulary).
      rule: the exact rule in words, written to the manifest.
      vocabulary_file: the vocabulary the labels were looked up in ("" for
        none).
      vocabulary_size: its number of classes (0 without one).
      builtin: the built-in music labels, 2018 vocabulary indices.
    """
    indices: tuple
    names: dict
    rule: str
    vocabulary_file: str = ""
    vocabulary_size: int = 0
    builtin: bool = False


def _split_names(text, known_names):
    """Splits a comma list of label names that may themselves hold commas.

    Some vocabulary names contain commas ("Nike, Inc."), so at each position
    the longest run of comma-separated pieces that is a known name wins.
    """
    pieces = text.split(",")
    names, i = [], 0
    while i < len(pieces):
        if not pieces[i].strip():
            i += 1
            continue
        for j in range(len(pieces), i, -1):
            candidate = ",".join(pieces[i:j]).strip()
            if candidate in known_names:
                names.append(candidate)
                i = j
                break
        else:
            names.append(pieces[i].strip())
            i += 1
    return names


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def build_selection(label_names=None, label_indices=None, verticals=None,
                    vocabulary_file=None):
    """Builds the label selection from the tool's label arguments.

    Args:
      label_names: comma string or list of vocabulary names.
      label_indices: comma string or list of class indices.
      verticals: comma string or list of verticals (Vertical1-3).
      vocabulary_file: path of the official vocabulary.csv; needed for
        `label_names` and `verticals`, optional otherwise (adds names).

    Returns:
      A `LabelSelection`: the union of what the three arguments name, or the
      built-in `vocabulary.MUSIC_LABELS` when all three are empty.

    Raises:
      ConfigError: naming the argument, for an unknown name, vertical or
        index, or names without `vocabulary_file`.
      DataError: naming the file, for a vocabulary with the wrong columns, or
        one that disagrees with the built-in music labels.
    """
    labels = vocabulary.read_vocabulary(vocabulary_file) if vocabulary_file else None
    by_index = {l.index: l for l in labels} if labels else {}
    by_name = {l.name: l for l in labels if l.name} if labels else {}

    if isinstance(label_names, str):
        label_names = _split_names(label_names, by_name)
    else:
        label_names = _as_list(label_names)
    verticals = _as_list(verticals)
    index_texts = _as_list(label_indices)

    if (label_names or verticals) and labels is None:
        field, value = (("label_names", label_names) if label_names
                        else ("verticals", verticals))
        raise ConfigError(
            f"{{{field}}} cannot be looked up without a vocabulary: "
            "{vocabulary_file}; give the official YouTube-8M vocabulary.csv",
            **{field: ",".join(value)}, vocabulary_file="")

    if not (label_names or verticals or index_texts):
        if labels is not None:
            for index, name in vocabulary.MUSIC_LABELS:
                if by_index.get(index) is None or by_index[index].name != name:
                    found = by_index[index].name if index in by_index else None
                    raise DataError(
                        f"vocabulary file {vocabulary_file} names index {index} "
                        f"{found!r}, but the built-in music label {index} is "
                        f"{name!r} (2018 vocabulary); select labels explicitly "
                        "by index or name")
        names = dict(vocabulary.MUSIC_LABELS)
        rule = ("a video is kept if its labels include at least one of the 17 "
                "built-in music labels (vocabulary.MUSIC_LABELS, 2018 "
                "vocabulary): " + ", ".join(
                    f"{i} {n}" for i, n in vocabulary.MUSIC_LABELS))
        return LabelSelection(vocabulary.MUSIC_LABEL_INDICES, names, rule,
                              str(vocabulary_file or ""),
                              len(labels) if labels else 0, builtin=True)

    selected, parts = set(), []
    if index_texts:
        indices = []
        for text in index_texts:
            try:
                index = int(text)
            except ValueError:
                raise ConfigError(
                    f"{{label_indices}}: {text!r} is not an "
                    "integer class index",
                    label_indices=",".join(index_texts)) from None
            if index < 0 or (labels is not None and index not in by_index):
                raise ConfigError(
                    f"{{label_indices}}: {index} is not a class index"
                    + (f" of {vocabulary_file}" if labels is not None
                       else ""), label_indices=",".join(index_texts))
            indices.append(index)
        selected.update(indices)
        parts.append("label_indices=" + ",".join(str(i) for i in indices))
    if label_names:
        for name in label_names:
            if name not in by_name:
                lowered = {n.lower(): n for n in by_name}
                hint = lowered.get(name.lower())
                raise ConfigError(
                    f"{{label_names}}: {name!r} is not a label "
                    f"name in {vocabulary_file}"
                    + (f"; did you mean {hint!r}?" if hint
                       else ""), label_names=",".join(label_names))
            selected.add(by_name[name].index)
        parts.append("label_names=" + ",".join(label_names))
    if verticals:
        for vertical in verticals:
            matched = [l.index for l in labels if vertical in l.verticals]
            if not matched:
                known = sorted({v for l in labels for v in l.verticals})
                raise ConfigError(
                    f"{{verticals}}: {vertical!r} is not a "
                    f"vertical in {vocabulary_file} (Vertical1-3); "
                    f"known: {known}", verticals=",".join(verticals))
            selected.update(matched)
        parts.append("verticals=" + ",".join(verticals) +
                     " (labels whose Vertical1, Vertical2 or Vertical3 matches)")
    indices = tuple(sorted(selected))
    names = {i: by_index[i].name for i in indices if i in by_index}
    rule = (f"a video is kept if its labels include at least one of the "
            f"{len(indices)} labels named by " + "; ".join(parts) +
            " (their union)")
    return LabelSelection(indices, names, rule, str(vocabulary_file or ""),
                          len(labels) if labels else 0)


def parse_split_fractions(text):
    """Parses `split_fractions` (a "0.8,0.1,0.1" string or three numbers)
    into three exact `fractions.Fraction`s, each number taken as a decimal.

    Raises:
      ConfigError: unless there are three non-negative numbers summing to 1.
    """
    parts = _as_list(text) if isinstance(text, str) else [str(t) for t in text]
    shown = ",".join(parts)
    try:
        values = tuple(fractions.Fraction(p) for p in parts)
    except (ValueError, ZeroDivisionError):
        raise ConfigError("{split_fractions} must be three numbers for "
                          "train,validate,test, e.g. 0.8,0.1,0.1",
                          split_fractions=shown) from None
    if len(values) != 3 or any(v < 0 for v in values):
        raise ConfigError("{split_fractions} must be three non-negative "
                          "numbers for train,validate,test",
                          split_fractions=shown)
    if abs(sum(values) - 1) > fractions.Fraction(1, 10**6):
        raise ConfigError(f"{{split_fractions}} must sum to 1, not "
                          f"{float(sum(values))}", split_fractions=shown)
    return values


# ----------------------------------------------------------------------------
# The rules, as pure functions of plain values (see the module docstring)


def selected_labels(labels, selected):
    """Rule 1: the record's labels that are in `selected` (a set of class
    indices), sorted; empty means the record is dropped as not_selected."""
    return sorted(selected.intersection(labels))


def frame_drop_reason(video_frames, audio_frames, audio_constant, min_frames):
    """Rule 2 (frame level): why a selected record is dropped, or None.

    Args:
      video_frames, audio_frames: frames in each view.
      audio_constant: every audio frame is byte-identical to the first.
      min_frames: fewer video frames are too_short.
    """
    if video_frames < min_frames:
        return "too_short"
    if audio_frames == 0 or audio_constant:
        return "no_audio_signal"
    if audio_frames != video_frames:
        return "frame_count_mismatch"
    return None


def video_drop_reason(values_in_range):
    """Rule 3 (video level, per record): why a selected record is dropped, or
    None. `values_in_range`: every value of both views is finite and inside
    [FEATURE_MIN, FEATURE_MAX] widened by RANGE_TOLERANCE."""
    return None if values_in_range else "bad_values"


def repeated_audio(pairs, min_videos):
    """Rule 3 (video level, over all records): the silent-track vectors.

    Args:
      pairs: (audio hash, id key) of every readable record, in any order and
        with repeats: an [n, 2] uint64 array or a sequence of pairs.
      min_videos: an audio vector shared by this many distinct ids carries no
        signal.

    Returns:
      {audio hash: number of distinct ids} of the audio vectors to drop.
    """
    pairs = np.unique(np.asarray(pairs, np.uint64).reshape(-1, 2), axis=0)
    hashes, counts = np.unique(pairs[:, 0], return_counts=True)
    return {int(h): int(c) for h, c in zip(hashes, counts) if c >= min_videos}


def kept_copy(digests):
    """Rule 4: which of the records left with one id is kept: the index of the
    smallest `record_digest` (the first of equal ones)."""
    return min(range(len(digests)), key=digests.__getitem__)


def resolve_copies(audio_hashes, digests, silent):
    """Rules 3 and 4 for the records of one id that passed the per-record
    rules: drop the copies whose audio is a repeated vector, keep one of the
    rest.

    Args:
      audio_hashes: each copy's audio hash (0 at frame level).
      digests: each copy's `record_digest`, in the same order.
      silent: the hashes `repeated_audio` returned (a dict or set).

    Returns:
      (index of the kept copy or None, copies dropped as no_audio_signal,
      copies dropped as duplicate_id).
    """
    good = [i for i, h in enumerate(audio_hashes) if h not in silent]
    if not good:
        return None, len(audio_hashes), 0
    kept = good[kept_copy([digests[i] for i in good])]
    return kept, len(audio_hashes) - len(good), len(good) - 1


def _hash64(data):
    return int.from_bytes(hashlib.sha256(data).digest()[:_HASH_BYTES], "big")


def record_digest(serialized):
    """The duplicate rule's digest of a serialized record: the first 8 bytes
    of its SHA-256, as a big-endian unsigned integer."""
    return _hash64(serialized)


def id_key(video_id):
    """The split and order key of an id: SHA-256 prefix as an integer."""
    if isinstance(video_id, str):
        video_id = video_id.encode()
    return _hash64(video_id)


@functools.lru_cache(maxsize=None)
def _split_thresholds(split_fractions):
    total = 2 ** (8 * _HASH_BYTES)
    first = split_fractions[0]
    return (int(first * total), int((first + split_fractions[1]) * total))


def split_of(video_id, split_fractions=DEFAULT_SPLIT_FRACTIONS):
    """The split ("train", "validate" or "test") an id goes to.

    Args:
      video_id: str or bytes.
      split_fractions: train, validate, test fractions: three
        `fractions.Fraction`s (as `parse_split_fractions` returns), or
        anything it parses.
    """
    if not all(isinstance(f, fractions.Fraction) for f in split_fractions):
        split_fractions = parse_split_fractions(split_fractions)
    key = id_key(video_id)
    train_end, validate_end = _split_thresholds(tuple(split_fractions))
    if key < train_end:
        return "train"
    return "validate" if key < validate_end else "test"


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
                or hashlib.sha256(data).digest()[:_HASH_BYTES] != digest):
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


def _frame_summary_fn(feature_names, feature_sizes, id_feature="id"):
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


def _video_summary_fn(feature_names, feature_sizes, id_feature="id"):
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


class _Scan:
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
    """Scans one file; returns a `_Scan` for it. Raises tf.errors.OpError."""
    scan = _Scan()
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
                audio_hash = _hash64(audio[i].tobytes())
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


# ----------------------------------------------------------------------------
# The tool


def _progress(stream, text):
    if stream is not None:
        progress_lib.write_line(f"subset: {text}", stream)


def clear_output(output_dir, overwrite):
    """Removes an earlier subset from `output_dir` (any filesystem
    tf.io.gfile knows, gs:// included), or raises unless `overwrite`."""
    names = (tf.io.gfile.listdir(output_dir)
             if tf.io.gfile.isdir(output_dir) else [])
    existing = sorted(
        name for name in names
        if name == MANIFEST_NAME or re.fullmatch(
            r"(train|validate|test)-\d{5}-of-\d{5}\.tfrecord", name))
    if existing and not overwrite:
        raise ConfigError(
            f"{{output_dir}} already holds a subset ({existing[0]} "
            "...); set {overwrite} to replace it", output_dir=output_dir,
            overwrite=True)
    for name in existing:
        tf.io.gfile.remove(os.path.join(output_dir, name))


@dataclasses.dataclass(frozen=True)
class Arguments:
    """The checked arguments of a subset run, as both implementations (this
    module and `yt8m_xmodal.pipelines.subset`) use them."""
    paths: tuple
    frame_features: bool
    feature_names: tuple
    feature_sizes: tuple
    selection: LabelSelection
    min_frames: int
    repeated_audio_min_videos: int
    split_fractions: tuple
    skip_corrupt: bool
    id_feature: str = records.ID_FEATURE

    @property
    def level(self):
        return "frame" if self.frame_features else "video"

    @property
    def reasons(self):
        return FRAME_DROP_REASONS if self.frame_features else VIDEO_DROP_REASONS

    @property
    def read_with(self):
        return dict(feature_names=",".join(self.feature_names),
                    feature_sizes=",".join(map(str, self.feature_sizes)))

    def summarize_fn(self):
        """The function that summarizes a batch of serialized records."""
        make = _frame_summary_fn if self.frame_features else _video_summary_fn
        return make(self.feature_names, self.feature_sizes, self.id_feature)


def check_arguments(input_data_pattern, frame_features=True,
                    feature_names=None, feature_sizes=None, selection=None,
                    min_frames=DEFAULT_MIN_FRAMES,
                    repeated_audio_min_videos=DEFAULT_REPEATED_AUDIO_MIN_VIDEOS,
                    split_fractions=DEFAULT_SPLIT_FRACTIONS,
                    num_shards=None, skip_corrupt=False,
                    id_feature=None, progress=None):
    """Checks the arguments of `extract_subset` (same names and meaning)
    against the first input record and resolves the input files; returns
    `Arguments`. `frame_features` or `id_feature` None: the records' own.

    Raises:
      ConfigError: naming the argument; `InputError` when no file matches,
        or the first record is not what the arguments read.
    """
    if not feature_sizes:
        feature_sizes = features.FEATURE_SIZES
    features.parse_feature_lists(
        feature_names or features.FRAME_FEATURE_NAMES, feature_sizes)
    if selection is None:
        selection = build_selection()
    if isinstance(split_fractions, str):
        split_fractions = parse_split_fractions(split_fractions)
    else:
        split_fractions = parse_split_fractions([str(f) for f in split_fractions])
    if num_shards is not None and num_shards < 1:
        raise ConfigError("{num_shards} must be at least 1",
                          num_shards=num_shards)
    if frame_features is not False and min_frames < 1:
        raise ConfigError("{min_frames} must be at least 1",
                          min_frames=min_frames)
    if repeated_audio_min_videos < 2:
        raise ConfigError("{repeated_audio_min_videos} must be at least 2 (one "
                          "video always shares its audio with itself)",
                          repeated_audio_min_videos=repeated_audio_min_videos)
    try:
        # Sorted over all globs, so the output does not depend on their order.
        paths = sorted(readers.resolve_files(input_data_pattern))
        detected = records.detect_format(input_data_pattern)
    except DataError as e:
        raise InputError(f"{{input_data_pattern}}: {e}",
                         input_data_pattern=input_data_pattern) from None
    if frame_features is None:
        frame_features = detected.frame_features if detected else True
        if detected:
            _progress(progress, f"{detected.path} holds {detected.describe()}"
                      f": reading {detected.level} records")
    if id_feature is None:
        id_feature = (detected.id_feature if detected and detected.id_feature
                      else records.ID_FEATURE)
    if not feature_names:
        feature_names = features.default_feature_names(frame_features)
    feature_names, feature_sizes = features.parse_feature_lists(
        feature_names, feature_sizes)
    _check_input(detected, frame_features, feature_names, feature_sizes,
                 id_feature, selection)
    return Arguments(tuple(paths), bool(frame_features), tuple(feature_names),
                     tuple(feature_sizes), selection, min_frames,
                     repeated_audio_min_videos, tuple(split_fractions),
                     bool(skip_corrupt), id_feature)


def scan_or_skip(args, path, file_index, summarize=None):
    """Pass 1 over one file: returns (its `_Scan`, None), or with
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


def no_readable_input(input_data_pattern, skipped):
    """The error when every input file was skipped."""
    return InputError(
        "no input file of {input_data_pattern} could be read; first "
        f"error: {skipped[0]['file']}: {skipped[0]['error']}",
        input_data_pattern=input_data_pattern)


def build_manifest(args, tool, num_shards, skipped, records_read, kept_counts,
                   dropped, label_counts, shards, silent):
    """The manifest.json contents, the same for both implementations.

    Args:
      args: `Arguments`.
      tool: the command that made the subset.
      num_shards: shards per split: an int, or a dict split -> int.
      skipped: [{"file", "error"}] of skipped files.
      records_read: records read from the files not skipped.
      kept_counts: dict split -> kept videos.
      dropped: Counter reason -> count.
      label_counts: {label index: Counter split -> videos}.
      shards: {split: [{"file", "records", "sha256"}]}, in shard order.
      silent: {audio hash: videos} from `repeated_audio`.
    """
    selection = args.selection
    kept_counts = {split: kept_counts.get(split, 0) for split in SPLITS}
    kept_counts["total"] = sum(kept_counts.values())
    manifest = {
        "tool": tool,
        "level": args.level,
        "feature_names": list(args.feature_names),
        "feature_sizes": list(args.feature_sizes),
        "selection": {
            "rule": selection.rule,
            "labels": [{"index": i, "name": selection.names.get(i)}
                       for i in selection.indices],
        },
        "quality_rules": _quality_rules(args.frame_features, args.min_frames,
                                        args.repeated_audio_min_videos),
        "duplicate_rule": _DUPLICATE_RULE,
        "split_fractions": [float(f) for f in args.split_fractions],
        "split_rule": _split_rule([str(f) for f in args.split_fractions]),
        "num_shards": num_shards,
        "input_files": list(args.paths),
        "skipped_files": list(skipped),
        "records_read": records_read,
        "kept": kept_counts,
        "dropped": {reason: dropped.get(reason, 0) for reason in args.reasons},
        "labels": [
            {"index": i, "name": selection.names.get(i),
             "videos": {**{s: label_counts.get(i, {}).get(s, 0)
                           for s in SPLITS},
                        "total": sum(label_counts.get(i, {}).values())}}
            for i in selection.indices],
        "shards": {split: list(shards.get(split, [])) for split in SPLITS},
    }
    if not args.frame_features:
        manifest["repeated_audio_vectors"] = [
            {"sha256_prefix": f"{h:016x}", "videos": c}
            for h, c in sorted(silent.items(), key=lambda x: (-x[1], x[0]))]
    return manifest


def write_manifest(output_dir, manifest):
    """Writes manifest.json (last: its presence marks a finished run)."""
    with tf.io.gfile.GFile(os.path.join(output_dir, MANIFEST_NAME), "w") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")


def summary_line(manifest, seconds):
    """The one-line summary of a finished run."""
    kept, dropped = manifest["kept"], manifest["dropped"]
    skipped = manifest["skipped_files"]
    return (f"done in {seconds:.1f} s: kept "
            + ", ".join(f"{s} {kept[s]}" for s in SPLITS)
            + "; dropped " + ", ".join(f"{r} {n}" for r, n in dropped.items())
            + (f"; skipped {len(skipped)} unreadable files" if skipped else ""))


def extract_subset(input_data_pattern, output_dir, frame_features=None,
                   feature_names=None, feature_sizes=None, selection=None,
                   min_frames=DEFAULT_MIN_FRAMES,
                   repeated_audio_min_videos=DEFAULT_REPEATED_AUDIO_MIN_VIDEOS,
                   split_fractions=DEFAULT_SPLIT_FRACTIONS,
                   num_shards=None, skip_corrupt=False,
                   overwrite=False, progress=sys.stderr, id_feature=None,
                   target_shard_mb=DEFAULT_TARGET_SHARD_MB):
    """Writes the subset shards and `manifest.json`; returns the manifest.

    Args:
      input_data_pattern: comma-separated globs of YT8M TFRecord files.
      output_dir: where `train-*`, `validate-*`, `test-*` and the manifest go.
      frame_features: frame-level (SequenceExample) input, else video level;
        None: the level of the first input record.
      feature_names, feature_sizes: the (video, audio) features, as for the
        readers; None means the level's YT8M defaults.
      selection: a `LabelSelection`; None means the 17 music labels.
      min_frames: frame level: fewer video frames are dropped as too_short.
      repeated_audio_min_videos: video level: an audio vector shared by this
        many distinct ids is dropped as no_audio_signal.
      split_fractions: train, validate, test fractions (numbers or string).
      num_shards: shards per split; None: enough shards of about
        `target_shard_mb` for each split (`shard_counts`).
      skip_corrupt: skip (and list) unreadable files instead of failing.
      overwrite: replace an existing subset in `output_dir`.
      progress: stream for the tool's lines: skipped files, splits written,
        the summary (None for quiet). The per-file progress is a
        `yt8m_xmodal.progress` report, shown when reports are enabled.
      id_feature: the context key of the ids: "id" (2018 release) or
        "video_id" (2017); None: the key of the first input record.

    Raises:
      ConfigError: naming the argument, for a bad argument.
      DataError: naming the file (and the record, where one is to blame),
        for input that cannot be read; `InputError` when the message also
        names arguments.
    """
    started = time.monotonic()
    args = check_arguments(
        input_data_pattern, frame_features=frame_features,
        feature_names=feature_names, feature_sizes=feature_sizes,
        selection=selection, min_frames=min_frames,
        repeated_audio_min_videos=repeated_audio_min_videos,
        split_fractions=split_fractions, num_shards=num_shards,
        skip_corrupt=skip_corrupt, id_feature=id_feature, progress=progress)
    paths, split_fractions = list(args.paths), args.split_fractions
    clear_output(output_dir, overwrite)
    summarize = args.summarize_fn()

    # Pass 1.
    scan, skipped = _Scan(), []
    bar = progress_lib.Progress("subset: scan", len(paths), "file")
    for file_index, path in enumerate(paths):
        file_scan, skip = scan_or_skip(args, path, file_index, summarize)
        if skip:
            skipped.append(skip)
            _progress(progress, f"skipped unreadable file {path}: "
                      f"{skip['error']}")
            bar.update(file_index + 1)
            continue
        scan.extend(file_scan)
        bar.update(file_index + 1, records=scan.records_read,
                   selected=len(scan), dropped=sum(scan.dropped.values()))
    bar.close()
    if len(skipped) == len(paths):
        raise no_readable_input(input_data_pattern, skipped)

    silent = {}
    if not args.frame_features and len(scan.audio_pairs):
        silent = repeated_audio(
            np.frombuffer(scan.audio_pairs, dtype=np.uint64),
            repeated_audio_min_videos)

    # In (key, id) order, each id's records: drop repeated audio, then keep
    # one copy.
    dropped = collections.Counter(scan.dropped)
    order = sorted(range(len(scan)), key=lambda i: (scan.keys[i], scan.ids[i]))
    kept = []
    for _, copies in itertools.groupby(order, key=lambda i: scan.ids[i]):
        copies = list(copies)
        chosen, silent_copies, duplicates = resolve_copies(
            [scan.audio_hashes[i] for i in copies],
            [scan.digests[i] for i in copies], silent)
        dropped["no_audio_signal"] += silent_copies
        dropped["duplicate_id"] += duplicates
        if chosen is not None:
            kept.append(copies[chosen])

    # Pass 2: write each split in key order.
    split_members = {split: [] for split in SPLITS}
    for i in kept:
        split_members[split_of(scan.ids[i], split_fractions)].append(i)
    label_counts = {index: collections.Counter()
                    for index in args.selection.indices}
    shards = {}
    counts_by_split = shard_counts(
        {split: sum(scan.lengths[i] for i in members)
         for split, members in split_members.items()},
        num_shards, target_shard_mb)
    fetcher = RecordFetcher(paths)
    try:
        for split in SPLITS:
            split_shards = counts_by_split[split]
            with writers.ShardedRecordWriter(output_dir, split,
                                             split_shards) as w:
                for i in split_members[split]:
                    w.write(fetcher.read(scan.files[i], scan.offsets[i],
                                         scan.lengths[i],
                                         scan.digests[i].to_bytes(_HASH_BYTES, "big")))
                    for index in scan.labels[i]:
                        label_counts[index][split] += 1
                paths_written = w.paths
            counts = [len(split_members[split][s::split_shards])
                      for s in range(split_shards)]
            shards[split] = [
                {"file": os.path.basename(p), "records": n,
                 "sha256": writers.file_sha256(p)}
                for p, n in zip(paths_written, counts)]
            _progress(progress, f"wrote {split}: {len(split_members[split])} "
                      f"videos in {split_shards} shards")
    finally:
        fetcher.close()

    manifest = build_manifest(
        # As the pipeline's: the count given, else {split: count}.
        args, TOOL_COMMAND, num_shards or counts_by_split, skipped,
        scan.records_read,
        {split: len(split_members[split]) for split in SPLITS}, dropped,
        label_counts, shards, silent)
    write_manifest(output_dir, manifest)
    _progress(progress, summary_line(manifest, time.monotonic() - started))
    return manifest


def _check_input(detected, frame_features, feature_names, feature_sizes,
                 id_feature, selection):
    """Stops, in one line, when the first input record is not what the
    arguments read, or is of the 2017 release while the labels are selected
    by 2018 indices."""
    if detected is None:
        return
    level = "frame" if frame_features else "video"
    data = config.DataConfig(
        frame_features=frame_features, feature_names=feature_names,
        feature_sizes=feature_sizes, id_feature=id_feature,
        # Labels are selected here, not checked against a vocabulary size.
        num_classes=max(records.NUM_CLASSES_2017, *detected.labels, 0) + 1)
    flags, problem = records.reading_flags(data, detected)
    if flags or problem:
        raise InputError(
            f"cannot read {detected.path} as {level}-level YouTube-8M "
            "records (read with {feature_names}, {feature_sizes}): its first "
            f"record, id {detected.video_id!r}, holds {detected.describe()}"
            + (f": {problem}" if problem else f"; pass {' '.join(flags)}"),
            feature_names=",".join(feature_names),
            feature_sizes=",".join(map(str, feature_sizes)))
    if detected.release_2017 and (
            selection.builtin
            or selection.vocabulary_size not in (0, records.NUM_CLASSES_2017)):
        chosen = ("the built-in music labels are indices of the 2018 "
                  "vocabulary" if selection.builtin else
                  f"the labels were looked up in {selection.vocabulary_file}, "
                  f"a vocabulary of {selection.vocabulary_size} classes")
        raise DataError(
            f"{detected.path} holds {detected.describe()}, whose labels index "
            f"the 2017 vocabulary of {records.NUM_CLASSES_2017} classes, but "
            f"{chosen}; give the 2017 vocabulary.csv (--vocabulary_file) with "
            "--label_names or --verticals, or select by --label_indices of "
            "the 2017 vocabulary")


def _quality_rules(frame_features, min_frames, repeated_audio_min_videos):
    if frame_features:
        return {
            "too_short": f"fewer than min_frames={min_frames} frames in the "
                         "video view",
            "no_audio_signal": "the audio view has no frames, or every audio "
                               "frame is byte-identical to the first",
            "frame_count_mismatch": "audio and video views have different "
                                    "numbers of frames",
        }
    return {
        "bad_values": (f"a NaN or infinite value, or one outside "
                       f"[{FEATURE_MIN}, {FEATURE_MAX}] +- {RANGE_TOLERANCE}, "
                       "in either view"),
        "no_audio_signal": (
            "the exact audio vector (float32 bytes) is shared by at least "
            f"repeated_audio_min_videos={repeated_audio_min_videos} distinct "
            "ids over all readable input records"),
    }
