"""The subset tool: `SubsetConfig` (the options of the tool and the Beam
pipeline), the checked `Arguments`, and `extract_subset`, which runs both
passes in one process: scan every file, apply the rules over all records,
then write each split in key order and the manifest last.
"""

import collections
import dataclasses
import itertools
import math
import os
import re
import sys
import time

import numpy as np
import tensorflow as tf

from yt8m_xmodal import config
from yt8m_xmodal import features
from yt8m_xmodal import formats
from yt8m_xmodal import progress as progress_lib
from yt8m_xmodal import readers
from yt8m_xmodal import writers
from yt8m_xmodal.errors import ConfigError, DataError
from yt8m_xmodal.subset.manifest import (
    MANIFEST_NAME, build_manifest, summary_line, write_manifest)
from yt8m_xmodal.subset.rules import (
    DEFAULT_MIN_FRAMES, DEFAULT_REPEATED_AUDIO_MIN_VIDEOS,
    DEFAULT_SPLIT_FRACTIONS, FRAME_DROP_REASONS, HASH_BYTES, SPLITS,
    VIDEO_DROP_REASONS, LabelSelection, build_selection,
    parse_split_fractions, repeated_audio, resolve_copies, split_of)
from yt8m_xmodal.subset.scan import (
    InputError, RecordFetcher, Scan, frame_summary_fn, scan_or_skip,
    video_summary_fn)

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

TOOL_COMMAND = "python -m yt8m_xmodal.cli.subset"


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
    id_feature: str = formats.ID_FEATURE

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
        make = frame_summary_fn if self.frame_features else video_summary_fn
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
        detected = formats.detect_format(input_data_pattern)
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
                      else formats.ID_FEATURE)
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


def no_readable_input(input_data_pattern, skipped):
    """The error when every input file was skipped."""
    return InputError(
        "no input file of {input_data_pattern} could be read; first "
        f"error: {skipped[0]['file']}: {skipped[0]['error']}",
        input_data_pattern=input_data_pattern)


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
    scan, skipped = Scan(), []
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
                                         scan.digests[i].to_bytes(HASH_BYTES, "big")))
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
        num_classes=max(formats.NUM_CLASSES_2017, *detected.labels, 0) + 1)
    flags, problem = formats.reading_flags(data, detected)
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
            or selection.vocabulary_size not in (0, formats.NUM_CLASSES_2017)):
        chosen = ("the built-in music labels are indices of the 2018 "
                  "vocabulary" if selection.builtin else
                  f"the labels were looked up in {selection.vocabulary_file}, "
                  f"a vocabulary of {selection.vocabulary_size} classes")
        raise DataError(
            f"{detected.path} holds {detected.describe()}, whose labels index "
            f"the 2017 vocabulary of {formats.NUM_CLASSES_2017} classes, but "
            f"{chosen}; give the 2017 vocabulary.csv (--vocabulary_file) with "
            "--label_names or --verticals, or select by --label_indices of "
            "the 2017 vocabulary")
