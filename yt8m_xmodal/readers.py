"""Reads YouTube-8M TFRecords into batches of model input, at both levels.

`YT8MFrameFeatureReader` (frame-level SequenceExamples: uint8 frames, one
per second) and `YT8MAggregatedFeatureReader` (video-level Examples: float
means), named as in the YT8M starter code, turn a file pattern into a
`tf.data.Dataset` of batch dictionaries (`id`, `video`, `audio`, and at frame
level `num_frames` and `mask`, plus `labels`). Each batch is parsed in one
op (a wire-format fast path at frame level); every record is checked in the
graph and a bad one raises a `DataError` naming the file, record and id, or
with `skip_corrupt=True` is skipped and counted. `iterate` turns tf.data's
errors into those `DataError`s. The pipeline's shape, the fast path and the
checks: docs/design.md, "Readers".
"""

import ctypes
import functools
import logging
import platform
import re

from google.protobuf import message
import numpy as np
import tensorflow as tf

from yt8m_xmodal import features
from yt8m_xmodal import tfrecord
from yt8m_xmodal.errors import ConfigError, DataError

log = logging.getLogger("yt8m_xmodal")

# The two views, in the order of `feature_names` and `feature_sizes`.
_VIEWS = ("video", "audio")
SKIP_REASONS = (
    "corrupt_shard",
    "zero_frames",
    "missing_feature_list",
    "bad_frame_size",
    "bad_feature_size",
    "non_finite",
    "bad_label",
)
_REASON_CODE = {reason: code for code, reason in enumerate(SKIP_REASONS, 1)}

# How many skipped-record descriptions a reader keeps for its report.
MAX_SKIPPED_DESCRIPTIONS = 20
# Records each training shuffle buffer holds: 512 frame-level records are
# about 180 MB of serialized bytes.
DEFAULT_SHUFFLE_BUFFER = 512
# glibc malloc settings for `tune_allocator`, as mallopt(param, value):
# M_TRIM_THRESHOLD and M_TOP_PAD keep freed memory in the process, and a
# fixed M_MMAP_THRESHOLD (the largest glibc takes) keeps records off mmap.
_MALLOPT = ((-1, 1 << 30), (-2, 64 << 20), (-3, 32 << 20))
# Records per chunk of a shard's bookkeeping (see _shard_records).
_SHARD_CHUNK = 16

_ERROR_MARKER = "[yt8m_xmodal.DataError] "
# How a DataError starts when TF's error names no record.
_UNNAMED_FAILURE = "the input pipeline failed: "
_MARKED_ERROR = re.compile(re.escape(_ERROR_MARKER) + r"([^\n]*)")
# How TF's parse ops name the record they failed on (we pass file:index as
# the example name).
_TF_RECORD_NAME = re.compile(r"(?:example id|Name): ([^,\s]+)")
# How TF's parse ops quote a record that is not a protobuf: its bytes to the
# end of the message, or to the first NUL byte.
_QUOTED_RECORD = re.compile(r"value: '.*", re.DOTALL)
_UNQUOTED_RECORD = "value: <not a protobuf>"


def record_batches(path, batch_size):
    """Yields the records of one file in lists of `batch_size`, read with
    their checksums checked, as tf.data reads them.

    Raises:
      tf.errors.OpError: for a record that cannot be read.
    """
    # No tf.data here: TFRecordDataset traces a function each time it is
    # built and instantiates it when iterated, which costs more than parsing
    # a video-level file (the subset tool) or a small upload (the search
    # service). tf_record_iterator (kept in tf.compat.v1) reads
    # the same records in C++ without a graph; its deprecation notice (on
    # the first call in a process), which points to TFRecordDataset, is not
    # for their users.
    tf_logger = tf.get_logger()
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        records = tf.compat.v1.io.tf_record_iterator(path)
    finally:
        tf_logger.setLevel(level)
    batch = []
    for record in records:
        batch.append(record)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def resolve_files(data_pattern):
    """Expands a YT8M `--*_data_pattern`: comma-separated globs.

    Returns:
      The matching file paths: each glob's matches sorted, in the order the
      globs are given, without duplicates.

    Raises:
      DataError: naming the glob, when any glob matches no file.
    """
    if not isinstance(data_pattern, str) or not data_pattern.strip():
        raise DataError(f"data pattern {data_pattern!r} is empty")
    files, seen = [], set()
    for glob in data_pattern.split(","):
        glob = glob.strip()
        if not glob:
            continue
        matches = sorted(tf.io.gfile.glob(glob))
        if not matches:
            raise DataError(
                f"data pattern {glob!r} (from {data_pattern!r}) matches no files")
        files.extend(m for m in matches if m not in seen)
        seen.update(matches)
    return files


@functools.lru_cache(maxsize=None)
def tune_allocator():
    """Keeps glibc malloc from handing freed memory back to the system.

    Every record, chunk and batch is a fresh allocation of up to a few
    hundred KB, freed a moment later. By default glibc returns such memory
    to the system (unmapping it, or trimming the heap of the thread that
    freed it), and the next allocation page-faults it back in: with frame-
    level records that costs as much CPU as reading them. These settings
    keep it in the process instead (its memory stays at its peak).
    Process-wide, done once per process, and called by `dataset()`; a
    no-op (False) where the C library is not glibc.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in _MALLOPT)


def iterate(batches, data_pattern=None):
    """Yields from `batches`, turning input-pipeline failures into DataError.

    Args:
      batches: any iterable of batches: a `tf.data.Dataset`, a distributed
        dataset, or an iterator over either.
      data_pattern: the files the batches come from. When TF's error names no
        record (a video-level record that is not a protobuf: the batched
        `parse_example` does not say which), the files are scanned for it so
        the error can name the file and record.

    Raises:
      DataError: naming the file and record, for any `tf.errors.OpError` the
        pipeline raises (a bad record in strict mode, an unparseable record).
    """
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as error:
            raise _named(as_data_error(error), data_pattern) from None
        except UnicodeDecodeError as error:
            # TF quotes the bytes of a record it cannot parse in its error
            # message, and fails to decode that message when they are not
            # UTF-8; the message itself is in `error.object`.
            raise _named(_data_error_from_text(tf_error_message(error)),
                         data_pattern) from None
        yield batch


def _named(error, data_pattern):
    """`error`, or one naming the unparseable record it failed on."""
    if data_pattern is None or not str(error).startswith(_UNNAMED_FAILURE):
        return error
    for path in resolve_files(data_pattern):
        try:
            for index, record in enumerate(
                    tf.data.TFRecordDataset(path).as_numpy_iterator()):
                try:
                    # Every Example is also a valid SequenceExample message.
                    tf.train.SequenceExample.FromString(record)
                except message.DecodeError:
                    return DataError(
                        f"record {path}:{index} is not a tf.train.Example or "
                        f"SequenceExample protobuf ({error})")
        except tf.errors.OpError:
            continue  # a damaged shard is reported by its own check
    return error


def as_data_error(error):
    """The `DataError` for a `tf.errors.OpError` from a reader's pipeline."""
    return _data_error_from_text(tf_error_message(error))


def tf_error_message(error):
    """The text of an error TF raised from inside tf.data.

    `error` is a `tf.errors.OpError`, or the `UnicodeDecodeError` TF raises
    when its message quotes the bytes of a record it cannot parse and they are
    not UTF-8 (the message itself is then in `error.object`).
    """
    if isinstance(error, UnicodeDecodeError):
        return error.object.decode("utf-8", errors="replace")
    return error.message or str(error)


def tf_error_detail(message):
    """The useful line of a TF error message (see `tf_error_message`)."""
    # A record that is not a protobuf is quoted in full: drop its bytes.
    message = _QUOTED_RECORD.sub(_UNQUOTED_RECORD, message)
    # Drop TF's "{{function_node ...}}" and "[[{{node ...}}]]" tags, the
    # tf.data transformation prefix and the op trailer.
    detail = re.sub(r"\s*\[\[\{\{node [^}]*\}\}\]\]", "", message)
    detail = re.sub(r"\{\{[^}]*\}\}\s*", "", detail)
    detail = re.sub(r"Error in user-defined function passed to \S+ "
                    r"transformation with iterator: \S+:\s*", "", detail)
    return detail.split(" [Op:")[0].split("\n")[0].strip()


def _data_error_from_text(message):
    message = _QUOTED_RECORD.sub(_UNQUOTED_RECORD, message)
    marked = _MARKED_ERROR.search(message)
    if marked:
        return DataError(marked.group(1))
    detail = tf_error_detail(message)
    named = _TF_RECORD_NAME.search(message)
    if named:
        return DataError(f"record {named.group(1)} cannot be read: {detail}")
    return DataError(f"{_UNNAMED_FAILURE}{detail}")


class _BaseReader:
    """The file handling, batching and bad-record bookkeeping of both levels.

    Subclasses implement `_parse_batch(names, serialized) -> (batch, reasons,
    evidence)`: the batch dict (labels still ragged under "_labels"), a reason
    code per record (0 = good) and per-record integers `_describe` turns into
    the error text.
    """

    def __init__(self, feature_names, feature_sizes, num_classes,
                 ragged_labels, skip_corrupt, id_feature="id"):
        (self.feature_names, self.feature_sizes) = features.parse_feature_lists(
            feature_names, feature_sizes)
        if int(num_classes) <= 0:
            raise ConfigError("{num_classes} must be positive",
                              num_classes=num_classes)
        self.num_classes = int(num_classes)
        self.ragged_labels = bool(ragged_labels)
        self.skip_corrupt = bool(skip_corrupt)
        self.id_feature = str(id_feature)
        self.skip_counts = {reason: 0 for reason in SKIP_REASONS}
        self.skipped = []

    # --- the dataset -----------------------------------------------------

    def dataset(self, data_pattern, batch_size, shuffle=False, seed=None,
                num_epochs=1, drop_remainder=False, shuffle_buffer_size=None,
                num_parallel_reads=None):
        """A `tf.data.Dataset` of batch dictionaries read from `data_pattern`.

        Args:
          data_pattern: comma-separated globs of TFRecord files.
          batch_size: records per batch.
          shuffle: shuffle shards each epoch and records in a buffer
            (training). Without it the order is deterministic (evaluation).
          seed: the shuffle seed; with it the training order is reproducible.
          num_epochs: passes over the data; None repeats forever.
          drop_remainder: drop a last batch smaller than `batch_size`.
          shuffle_buffer_size: records in the shuffle buffer (default 512).
          num_parallel_reads: shards read at once (default: tf.data tunes).

        Raises:
          DataError: when a glob matches no file (at once); bad records raise
            while iterating, see the module docstring and `iterate`.
        """
        if int(batch_size) <= 0:
            raise ConfigError("{batch_size} must be positive",
                              batch_size=batch_size)
        batch_size = int(batch_size)
        tune_allocator()
        files = resolve_files(data_pattern)
        sizes = [tf.io.gfile.stat(f).length for f in files]
        deterministic = not shuffle or seed is not None

        shards = tf.data.Dataset.from_tensor_slices(
            (tf.constant(files), tf.constant(sizes, tf.int64)))
        if shuffle:
            shards = shards.shuffle(len(files), seed=seed,
                                    reshuffle_each_iteration=True)
        shards = shards.repeat(num_epochs)
        records = shards.interleave(
            self._shard_records,
            cycle_length=min(len(files), num_parallel_reads or 8),
            block_length=1,
            num_parallel_calls=num_parallel_reads or tf.data.AUTOTUNE,
            deterministic=deterministic)
        # Skipping can shrink a batch, so it is refilled after the parse.
        drop_before_parse = drop_remainder and not self.skip_corrupt
        if shuffle:
            records = records.unbatch().shuffle(
                shuffle_buffer_size or DEFAULT_SHUFFLE_BUFFER, seed=seed,
                reshuffle_each_iteration=True)
            batches = records.batch(batch_size, drop_remainder=drop_before_parse)
        else:
            # One copy of the chunks into batches, not two (unbatch, batch).
            batches = records.rebatch(batch_size,
                                      drop_remainder=drop_before_parse)
        batches = batches.map(self._parse_and_check,
                              num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=deterministic)
        if self.skip_corrupt:
            batches = batches.rebatch(batch_size, drop_remainder=drop_remainder)
        return batches.prefetch(tf.data.AUTOTUNE)

    def batches(self, data_pattern, batch_size, **kwargs):
        """`iterate(self.dataset(...))`: batches, with errors as DataError."""
        return iterate(self.dataset(data_pattern, batch_size, **kwargs),
                       data_pattern)

    def _shard_records(self, path, size):
        """Chunks of (path, record index, serialized record) of one shard.

        `ignore_errors` ends the shard at the first unreadable record; the sum
        of the framed sizes of the records read, compared with the file size
        at an empty end chunk, tells whether anything was lost. Working in
        chunks keeps this bookkeeping to one function call per
        `_SHARD_CHUNK` records (per-record calls cost as much as the parse of
        a small record); `dataset` unbatches the chunks.
        """
        size = tf.cast(size, tf.int64)
        chunks = tf.data.TFRecordDataset(path)
        chunks = chunks.ignore_errors().batch(_SHARD_CHUNK)
        chunks = chunks.concatenate(
            tf.data.Dataset.from_tensors(tf.constant([], tf.string)))

        def count_bytes(state, records):
            records_read, bytes_read = state
            count = tf.size(records, out_type=tf.int64)
            bytes_read += (tf.reduce_sum(tf.cast(tf.strings.length(records),
                                                 tf.int64))
                           + tfrecord.FRAMING_BYTES * count)
            tf.cond((count == 0) & tf.not_equal(bytes_read, size),
                    lambda: self._report_shard(path, bytes_read, size),
                    lambda: None)
            indices = records_read + tf.range(count)
            return ((records_read + count, bytes_read),
                    (tf.fill([count], path), indices, records))

        zero = tf.constant(0, tf.int64)
        return chunks.scan((zero, zero), count_bytes)

    def _parse_and_check(self, paths, indices, serialized):
        names = tf.strings.join([paths, tf.strings.as_string(indices)], ":")
        batch, reasons, evidence = self._parse_batch(names, serialized)
        labels, label_reason = self._labels(batch.pop("_labels"))
        reasons = tf.where(reasons == 0, label_reason, reasons)
        batch["labels"] = labels
        is_bad = reasons > 0
        tf.cond(tf.reduce_any(is_bad),
                lambda: self._report_records(reasons, names, batch["id"],
                                             *evidence),
                lambda: None)
        if self.skip_corrupt:
            keep = tf.logical_not(is_bad)
            batch = {k: (tf.ragged.boolean_mask(v, keep)
                         if isinstance(v, tf.RaggedTensor)
                         else tf.boolean_mask(v, keep))
                     for k, v in batch.items()}
        return batch

    def _labels(self, labels):
        """Multi-hot or ragged labels, and `bad_label` for out-of-range ones."""
        in_range = (labels.values >= 0) & (labels.values < self.num_classes)
        out_of_range = labels.with_values(tf.cast(~in_range, tf.int32))
        bad = tf.reduce_sum(out_of_range, axis=1) > 0
        reason = tf.where(bad, _REASON_CODE["bad_label"], 0)
        if self.ragged_labels:
            return labels, reason
        rows = tf.cast(labels.value_rowids(), tf.int64)
        indices = tf.stack([rows, labels.values], axis=1)
        indices = tf.boolean_mask(indices, in_range)
        batch_size = tf.cast(labels.nrows(), tf.int64)
        multi_hot = tf.scatter_nd(
            indices, tf.ones(tf.shape(indices)[:1], tf.float32),
            tf.stack([batch_size, tf.constant(self.num_classes, tf.int64)]))
        # Duplicated labels in a record add up in scatter_nd.
        return tf.minimum(multi_hot, 1.0), reason

    # --- bad-record bookkeeping (runs in Python, only on bad batches) -----

    def _report_shard(self, path, bytes_read, size):
        def report(path, bytes_read, size):
            self._fail_or_count("corrupt_shard", tfrecord.shard_shortfall(
                path.numpy().decode(), int(bytes_read), int(size)))
            return []
        tf.py_function(report, [path, bytes_read, size], [])

    def _report_records(self, reasons, names, ids, *evidence):
        def report(reasons, names, ids, *evidence):
            evidence = [e.numpy() for e in evidence]
            for row in np.flatnonzero(reasons.numpy()):
                reason = SKIP_REASONS[int(reasons[row]) - 1]
                video_id = ids[row].numpy().decode(errors="replace")
                detail = self._describe(reason, [e[row] for e in evidence])
                self._fail_or_count(
                    reason, f"record {names[row].numpy().decode()} "
                    f"(id {video_id!r}): {detail}")
            return []
        tf.py_function(report, [reasons, names, ids, *evidence], [])

    def _fail_or_count(self, reason, description):
        if not self.skip_corrupt:
            # The marker lets `iterate` recover this message from TF's error.
            raise DataError(_ERROR_MARKER + description
                            + " (pass skip_corrupt=True to skip and count such"
                            " records)")
        self.skip_counts[reason] += 1
        if len(self.skipped) < MAX_SKIPPED_DESCRIPTIONS:
            self.skipped.append(f"{reason}: {description}")
            log.warning("skipping %s: %s", reason, description)

    def parse_serialized(self, serialized):
        """Parses a [B] batch of serialized records, with no Python callback.

        For serving signatures (a SavedModel cannot hold the Python callback
        that names bad records): a bad record fails the call with an
        InvalidArgumentError that states the reason code (see SKIP_REASONS).
        """
        names = tf.strings.as_string(tf.range(tf.shape(serialized)[0]))
        batch, reasons, _ = self._parse_batch(names, serialized)
        labels, label_reason = self._labels(batch.pop("_labels"))
        reasons = tf.where(reasons == 0, label_reason, reasons)
        tf.debugging.assert_equal(
            reasons, tf.zeros_like(reasons),
            message=f"bad records (reason codes: 1-based index into "
                    f"{SKIP_REASONS})")
        batch["labels"] = labels
        return batch

    def skip_summary(self):
        """One line with the non-zero skip counts, e.g. for a training log."""
        counts = {r: c for r, c in self.skip_counts.items() if c}
        if not counts:
            return "no records skipped"
        return "skipped " + ", ".join(f"{c} {r}" for r, c in counts.items())


class YT8MFrameFeatureReader(_BaseReader):
    """Reads frame-level YT8M `tf.train.SequenceExample`s.

    Frames are dequantized exactly as YT8M does, truncated to `max_frames` or
    zero-padded at the end; the frame count is the shorter of the two views.

    Args:
      feature_names: the (video, audio) feature-list names, or YT8M's
        comma-separated `--feature_names` string.
      feature_sizes: bytes per frame of each view, or `--feature_sizes`.
      max_frames: frames kept per video (T of the batch).
      num_classes: width of the multi-hot labels.
      ragged_labels: give labels as a ragged int64 [B, None] of indices.
      skip_corrupt: skip and count bad records instead of raising DataError.
      id_feature: the context key of the id: "id", or "video_id" for the
        2017 release.

    Example:

    >>> reader = YT8MFrameFeatureReader(max_frames=300)
    >>> ds = reader.dataset("train*.tfrecord", 32, shuffle=True, seed=1)
    >>> for batch in iterate(ds): ...
    """

    def __init__(self, feature_names=features.FRAME_FEATURE_NAMES,
                 feature_sizes=features.FEATURE_SIZES,
                 max_frames=features.MAX_FRAMES,
                 num_classes=features.NUM_CLASSES, ragged_labels=False,
                 skip_corrupt=False, id_feature="id"):
        super().__init__(feature_names, feature_sizes, num_classes,
                         ragged_labels, skip_corrupt, id_feature)
        if int(max_frames) <= 0:
            raise ConfigError("{max_frames} must be positive",
                              max_frames=max_frames)
        self.max_frames = int(max_frames)
        # The fast path's frame layout per view: (header, stride); None
        # when both views have one name (only the general parse tells
        # such lists apart as it does).
        self._layout = None
        if self.feature_names[0] != self.feature_names[1]:
            self._layout = {
                view: (_frame_header(size), len(_frame_header(size)) + size)
                for view, size in zip(("video", "audio"), self.feature_sizes)}

    def _parse_batch(self, names, serialized):
        """The fast path when every record of the batch has the regular
        layout and fits it (see `_fast_path`), else the general parse."""
        if self._layout is None:
            return self._parse_any(names, serialized)
        fast, located, blocks = self._fast_path(serialized)
        return tf.cond(
            tf.reduce_all(fast),
            lambda: self._parse_regular(names, serialized, located, blocks),
            lambda: self._parse_any(names, serialized))

    def _fast_path(self, serialized):
        """(fast, located, blocks): whether the fast path can read each
        record (bool [B]), `_locate_lists`'s offsets, and per view the
        list's bytes (uint8 [B, max_frames * stride], zero past the list:
        cut out of each record with one `substr` and one `decode_raw`, so
        that the frames are a fixed-stride reshape away)."""
        located = _locate_lists(serialized, self.feature_names, self._layout)
        fast = located["regular"]
        blocks = {}
        for view in ("video", "audio"):
            header, stride = self._layout[view]
            frames = located[view + "_frames"]
            width = self.max_frames * stride
            block = tf.io.decode_raw(
                tf.strings.substr(serialized, located[view + "_start"],
                                  tf.fill(tf.shape(frames), tf.constant(
                                      width, tf.int64))),
                tf.uint8, fixed_length=width)
            # Longer lists go to the general parse, which checks every
            # frame of them; so do frames of another size.
            fast &= ((frames <= self.max_frames)
                     & _regular_headers_ok(block, frames, header, stride))
            blocks[view] = block
        return fast, located, blocks

    def _parse_any(self, names, serialized):
        """Parses any batch with `parse_sequence_example`: every frame becomes
        its own string before the decode."""
        video_name, audio_name = self.feature_names
        context, lists, lengths = tf.io.parse_sequence_example(
            serialized,
            context_features=_lenient_context_features(self.id_feature),
            # Missing lists parse as empty so one record cannot fail the batch.
            sequence_features={
                name: tf.io.FixedLenSequenceFeature([], tf.string,
                                                    allow_missing=True)
                for name in self.feature_names},
            example_names=names)
        stream_frames = [lengths[video_name], lengths[audio_name]]
        num_frames, mask = self._frame_mask(stream_frames)
        batch = {"id": context[self.id_feature], "_labels": context["labels"]}
        frame_checks = []
        for key, name, size, count in zip(("video", "audio"), self.feature_names,
                                          self.feature_sizes, stream_frames):
            frames = lists[name]
            # Check every frame of the stream, kept or not: a wrong length
            # means the record was written with another feature layout.
            in_stream = (tf.range(tf.shape(frames, tf.int64)[1])
                         < count[:, None])
            # A column past the last frame keeps the argmax and gather
            # defined when no record of the batch has a frame in the list.
            frame_bytes = tf.pad(tf.strings.length(frames), [[0, 0], [0, 1]])
            wrong = tf.pad(in_stream, [[0, 0], [0, 1]]) & tf.not_equal(
                frame_bytes, size)
            first = tf.argmax(tf.cast(wrong, tf.int32), axis=1,
                              output_type=tf.int32)
            frame_checks.append((tf.reduce_any(wrong, axis=1), first,
                                 tf.gather(frame_bytes, first, batch_dims=1)))

            batch[key] = _dequantize_frames(self._decode_padded(frames, size),
                                            mask)
        return self._frame_batch(batch, num_frames, mask, stream_frames,
                                 frame_checks)

    def _decode_padded(self, frames, size):
        """[B, F] frame strings -> [B, max_frames, size] uint8, zero-padded."""
        # fixed_length keeps a bad-size frame from failing the batch (the
        # record is reported by the checks) and is faster than a plain decode.
        codes = tf.io.decode_raw(frames[:, :self.max_frames], tf.uint8,
                                 fixed_length=size)
        missing = self.max_frames - tf.shape(codes)[1]
        codes = tf.cond(
            missing > 0,
            lambda: tf.pad(codes, [[0, 0], [0, missing], [0, 0]]),
            lambda: codes)
        return tf.ensure_shape(codes, [None, self.max_frames, size])

    def parse_one_view(self, serialized, view):
        """Parses records that need to hold only one modality, for serving.

        Args:
          serialized: [B] serialized records.
          view: "video" or "audio".

        Returns:
          {"id", view: [B, max_frames, D], "num_frames", "mask"}. A record
          without frames of the view, or with a frame of another size, fails
          the call with an InvalidArgumentError naming the feature list.
        """
        name = self.feature_names[_VIEWS.index(view)]
        size = self.feature_sizes[_VIEWS.index(view)]
        context, lists, lengths = tf.io.parse_sequence_example(
            serialized,
            context_features=_lenient_context_features(self.id_feature),
            sequence_features={name: tf.io.FixedLenSequenceFeature(
                [], tf.string, allow_missing=True)})
        frames = lists[name]
        tf.debugging.assert_positive(
            lengths[name], message=f"records without frames in {name!r}")
        in_stream = (tf.range(tf.shape(frames, tf.int64)[1])
                     < lengths[name][:, None])
        tf.debugging.assert_equal(
            tf.reduce_all((tf.strings.length(frames) == size) | ~in_stream),
            True, message=f"{name!r} frames are not {size} bytes")
        num_frames = tf.minimum(lengths[name], self.max_frames)
        mask = tf.range(self.max_frames, dtype=tf.int64) < num_frames[:, None]
        return {"id": context[self.id_feature],
                view: _dequantize_frames(self._decode_padded(frames, size),
                                         mask),
                "num_frames": tf.cast(num_frames, tf.int32), "mask": mask}

    def _parse_regular(self, names, serialized, located, blocks):
        """Parses a batch of regular records: each view's frames are read
        straight out of its list's bytes (`_fast_path`'s blocks)."""
        # The context field with its tag and length is itself a serialized
        # tf.train.Example (whose field 1 is the Features).
        context_end = located["context_end"]
        context = tf.io.parse_example(
            tf.strings.substr(serialized, tf.zeros_like(context_end),
                              context_end),
            _lenient_context_features(self.id_feature), example_names=names)
        stream_frames = [located["video_frames"], located["audio_frames"]]
        num_frames, mask = self._frame_mask(stream_frames)
        batch = {"id": context[self.id_feature], "_labels": context["labels"]}
        frame_checks = []
        for view, size, count in zip(("video", "audio"), self.feature_sizes,
                                     stream_frames):
            batch[view] = _regular_frames(blocks[view], mask,
                                          *self._layout[view])
            # Every frame has the header of `size` bytes (checked above); the
            # evidence is what the general parse gives for such a list.
            frame_checks.append((tf.zeros_like(count, tf.bool),
                                 tf.zeros_like(count, tf.int32),
                                 tf.where(count > 0, size, 0)))
        return self._frame_batch(batch, num_frames, mask, stream_frames,
                                 frame_checks)

    def _frame_mask(self, stream_frames):
        num_frames = tf.minimum(tf.minimum(*stream_frames), self.max_frames)
        mask = tf.range(self.max_frames, dtype=tf.int64) < num_frames[:, None]
        return num_frames, mask

    def _frame_batch(self, batch, num_frames, mask, stream_frames,
                     frame_checks):
        """(batch, reasons, evidence) from the parsed views and the checks
        per view: (bad frame size, first bad frame, its byte length)."""
        batch["num_frames"] = tf.cast(num_frames, tf.int32)
        batch["mask"] = mask
        batch["id"] = tf.ensure_shape(batch["id"], [None])

        (bad_video, first_video, video_bytes), (bad_audio, first_audio,
                                                audio_bytes) = frame_checks
        has_video, has_audio = (c > 0 for c in stream_frames)
        reasons = tf.zeros_like(num_frames, tf.int32)
        reasons = tf.where(bad_video | bad_audio,
                           _REASON_CODE["bad_frame_size"], reasons)
        reasons = tf.where(has_video != has_audio,
                           _REASON_CODE["missing_feature_list"], reasons)
        reasons = tf.where(~has_video & ~has_audio,
                           _REASON_CODE["zero_frames"], reasons)
        evidence = (stream_frames[0], stream_frames[1],
                    first_video, video_bytes, first_audio, audio_bytes)
        return batch, reasons, evidence

    def _describe(self, reason, evidence):
        video_frames, audio_frames, v_frame, v_bytes, a_frame, a_bytes = evidence
        (video_name, audio_name), (video_size, audio_size) = (
            self.feature_names, self.feature_sizes)
        if reason == "zero_frames":
            return (f"has no frames in {video_name!r} or {audio_name!r}")
        if reason == "missing_feature_list":
            missing, present, count = (
                (audio_name, video_name, video_frames) if video_frames
                else (video_name, audio_name, audio_frames))
            return (f"feature list {missing!r} is missing or empty while "
                    f"{present!r} has {int(count)} frames")
        if reason == "bad_frame_size":
            if v_bytes != video_size and v_frame < video_frames:
                return (f"{video_name!r} frame {int(v_frame)} has {int(v_bytes)}"
                        f" bytes, expected {video_size} (--feature_sizes)")
            return (f"{audio_name!r} frame {int(a_frame)} has {int(a_bytes)} "
                    f"bytes, expected {audio_size} (--feature_sizes)")
        return f"has a label outside [0, {self.num_classes})"


class YT8MAggregatedFeatureReader(_BaseReader):
    """Reads video-level YT8M `tf.train.Example`s (mean features).

    Args: as YT8MFrameFeatureReader (without max_frames), with
      feature_sizes the number of floats in each vector.

    Example:

    >>> reader = YT8MAggregatedFeatureReader()
    >>> for batch in reader.batches("validate*.tfrecord", 1024): ...
    """

    def __init__(self, feature_names=features.VIDEO_FEATURE_NAMES,
                 feature_sizes=features.FEATURE_SIZES,
                 num_classes=features.NUM_CLASSES, ragged_labels=False,
                 skip_corrupt=False, id_feature="id"):
        super().__init__(feature_names, feature_sizes, num_classes,
                         ragged_labels, skip_corrupt, id_feature)

    def _parse_batch(self, names, serialized):
        spec = _lenient_context_features(self.id_feature)
        for name in self.feature_names:
            # Ragged, so a vector of the wrong size is reported, not fatal.
            spec[name] = tf.io.RaggedFeature(tf.float32)
        parsed = tf.io.parse_example(serialized, spec, example_names=names)
        batch = {"id": parsed[self.id_feature], "_labels": parsed["labels"]}
        reasons = tf.zeros(tf.shape(serialized), tf.int32)
        lengths = []
        for key, name, size in zip(("video", "audio"), self.feature_names,
                                   self.feature_sizes):
            vectors = parsed[name]
            length = vectors.row_lengths()
            lengths.append(length)
            values = vectors.to_tensor(shape=[None, size])
            finite = tf.reduce_all(tf.math.is_finite(values), axis=1)
            reasons = tf.where((reasons == 0) & ~finite,
                               _REASON_CODE["non_finite"], reasons)
            batch[key] = values
        wrong_size = ((lengths[0] != self.feature_sizes[0])
                      | (lengths[1] != self.feature_sizes[1]))
        reasons = tf.where(wrong_size, _REASON_CODE["bad_feature_size"], reasons)
        return batch, reasons, tuple(lengths)

    def parse_one_view(self, serialized, view):
        """Parses records that need to hold only one modality, for serving:
        {"id", view: [B, D]}; a missing or wrong-size vector, or NaN, fails
        the call with an InvalidArgumentError naming the feature."""
        name = self.feature_names[_VIEWS.index(view)]
        size = self.feature_sizes[_VIEWS.index(view)]
        spec = _lenient_context_features(self.id_feature)
        spec[name] = tf.io.RaggedFeature(tf.float32)
        parsed = tf.io.parse_example(serialized, spec)
        tf.debugging.assert_equal(tf.cast(parsed[name].row_lengths(),
                                          tf.int64),
                                  tf.constant(size, tf.int64),
                                  message=f"{name!r} is not {size} floats")
        values = parsed[name].to_tensor(shape=[None, size])
        tf.debugging.assert_all_finite(values, f"{name!r} holds NaN or inf")
        return {"id": parsed[self.id_feature], view: values}

    def _describe(self, reason, evidence):
        if reason == "bad_feature_size":
            return "; ".join(
                f"{name!r} has {int(n)} floats, expected {size} (--feature_sizes)"
                for name, size, n in zip(self.feature_names, self.feature_sizes,
                                         evidence) if n != size)
        if reason == "non_finite":
            return (f"{self.feature_names[0]!r} or {self.feature_names[1]!r} "
                    "holds NaN or inf")
        return f"has a label outside [0, {self.num_classes})"


@tf.function(jit_compile=True)
def _dequantize_frames(codes, mask):
    """YT8M dequantization of uint8 frames [B,T,D], zero where `mask` is off.

    XLA fuses the cast, scale, shift and select into one pass over the batch;
    as separate ops they are four passes over a tensor too big for the cache,
    which made this the slowest step of the reader (bench/bench_reader.py).
    """
    return tf.where(mask[:, :, None], features.dequantize(codes), 0.0)


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


def _frame_header(size):
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


def _locate_lists(serialized, feature_names, layout):
    """Where each record's video and audio frames are, if it is regular.

    A record is regular when it is exactly: the context, then the feature
    lists holding exactly two entries, the video and audio names (either
    order), each a whole number of `layout` strides. Whether each frame
    header matches is checked on the decoded bytes (`_regular_headers_ok`).

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
def _regular_headers_ok(block, frames, header, stride):
    """Whether the first `frames` [B] frames of each list's bytes (uint8
    [B, T * stride]) start with `header` (bool [B])."""
    headers = _strided(block, stride)[:, :, :header.shape[0]]
    in_list = (tf.range(tf.shape(headers, tf.int64)[1])
               < tf.cast(frames, tf.int64)[:, None])
    return tf.reduce_all((headers == header) | ~in_list[:, :, None],
                         axis=[1, 2])


@tf.function(jit_compile=True)
def _regular_frames(block, mask, header, stride, dequantize=True):
    """Frames [B,T,D] float32 of each list's bytes (uint8 [B, T * stride]),
    zero where `mask` [B,T] is off.

    XLA fuses the strided slice of the frame data with the dequantization:
    one pass from the list bytes to the output, as `_dequantize_frames`.
    `dequantize=False` gives the uint8 codes instead (bench/bench_reader.py
    times the two steps apart with it).
    """
    codes = _strided(block, stride)[:, :, header.shape[0]:]
    if not dequantize:
        return tf.where(mask[:, :, None], codes, tf.zeros_like(codes))
    return tf.where(mask[:, :, None], features.dequantize(codes), 0.0)


def _lenient_context_features(id_feature):
    """`features.context_features()` that never fails a batch parse.

    The id is read from `id_feature` ("video_id" in the 2017 release); a
    missing id parses as "" (the error names the file and record index
    instead), labels parse ragged.
    """
    spec = features.context_features()
    del spec["id"]
    spec[id_feature] = tf.io.FixedLenFeature([], tf.string, default_value="")
    spec["labels"] = tf.io.RaggedFeature(tf.int64)
    return spec


def reader_for(data, ragged_labels=False, skip_corrupt=False):
    """The reader a `config.DataConfig` describes (as the starter code's
    train.py picks one from its flags).

    Args:
      data: a `config.DataConfig` (frame or video level, feature names and
        sizes, max_frames, num_classes).
      ragged_labels, skip_corrupt: see the reader classes.
    """
    if data.frame_features:
        return YT8MFrameFeatureReader(
            data.feature_names, data.feature_sizes, max_frames=data.max_frames,
            num_classes=data.num_classes, ragged_labels=ragged_labels,
            skip_corrupt=skip_corrupt, id_feature=data.id_feature)
    return YT8MAggregatedFeatureReader(
        data.feature_names, data.feature_sizes, num_classes=data.num_classes,
        ragged_labels=ragged_labels, skip_corrupt=skip_corrupt,
        id_feature=data.id_feature)
