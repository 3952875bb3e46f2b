"""Reads YouTube-8M TFRecords into batches of model input, at both levels.

`YT8MFrameFeatureReader` (frame.py) and `YT8MAggregatedFeatureReader`
(video.py), named as in the YT8M starter code, turn a file pattern into a
`tf.data.Dataset` of batch dictionaries (dataset.py: the pipeline both share,
its checks and `tune_allocator`). The frame level reads regular records
straight from the wire format (wire.py); `iterate` turns tf.data's errors
into `DataError`s naming the file and record (errors.py). More:
docs/design.md, "Readers".
"""

from yt8m_xmodal.readers.dataset import (
    DEFAULT_SHUFFLE_BUFFER, MAX_SKIPPED_DESCRIPTIONS, SKIP_REASONS,
    tune_allocator)
from yt8m_xmodal.readers.errors import (
    as_data_error, iterate, tf_error_detail, tf_error_message)
from yt8m_xmodal.readers.files import record_batches, resolve_files
from yt8m_xmodal.readers.frame import YT8MFrameFeatureReader
from yt8m_xmodal.readers.levels import reader_for
from yt8m_xmodal.readers.video import YT8MAggregatedFeatureReader

__all__ = [
    "DEFAULT_SHUFFLE_BUFFER",
    "MAX_SKIPPED_DESCRIPTIONS",
    "SKIP_REASONS",
    "YT8MAggregatedFeatureReader",
    "YT8MFrameFeatureReader",
    "as_data_error",
    "iterate",
    "reader_for",
    "record_batches",
    "resolve_files",
    "tf_error_detail",
    "tf_error_message",
    "tune_allocator",
]
