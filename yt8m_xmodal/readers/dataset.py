"""The tf.data pipeline both readers share, and its bad-record bookkeeping.

`BaseReader.dataset` turns a file pattern into a `tf.data.Dataset` of batch
dictionaries: shards interleaved (each checked for truncation), records
shuffled or kept in order, batched, then parsed and checked one batch per op
by the subclass (`frame.py`, `video.py`). A bad record raises a `DataError`
naming the file, record and id, or with `skip_corrupt=True` is skipped and
counted. `tune_allocator` is the process-wide glibc malloc setting the
pipeline needs. Its shape: docs/design.md, "Readers".
"""

import ctypes
import functools
import logging
import platform

import numpy as np
import tensorflow as tf

from yt8m_xmodal import features
from yt8m_xmodal import tfrecord
from yt8m_xmodal.errors import ConfigError, DataError
from yt8m_xmodal.readers.errors import ERROR_MARKER, iterate
from yt8m_xmodal.readers.files import resolve_files

log = logging.getLogger("yt8m_xmodal")

# The two views, in the order of `feature_names` and `feature_sizes`.
VIEWS = ("video", "audio")
SKIP_REASONS = (
    "corrupt_shard",
    "zero_frames",
    "missing_feature_list",
    "bad_frame_size",
    "bad_feature_size",
    "non_finite",
    "bad_label",
)
REASON_CODE = {reason: code for code, reason in enumerate(SKIP_REASONS, 1)}

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


class BaseReader:
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
        reason = tf.where(bad, REASON_CODE["bad_label"], 0)
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
            raise DataError(ERROR_MARKER + description
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


def lenient_context_features(id_feature):
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
