"""The files of a data pattern, and the raw records of one file.

Used by the readers and, outside them, by format detection, progress totals,
the subset tool and the search service's uploads.
"""

import logging

import tensorflow as tf

from yt8m_xmodal.errors import DataError


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
