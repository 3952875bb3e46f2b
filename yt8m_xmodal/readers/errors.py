"""Turns the errors TensorFlow raises from inside tf.data into `DataError`s.

A bad record found by the readers' checks raises a `DataError` inside a
`tf.py_function`; TF wraps it in its own error, so its message carries
`ERROR_MARKER` for `iterate` to recover it. Errors of TF's own parse ops name
the record by the file:index name the readers pass them; a video-level record
that is not a protobuf is named by scanning the files for it.
"""

import re

from google.protobuf import message
import tensorflow as tf

from yt8m_xmodal.errors import DataError
from yt8m_xmodal.readers.files import resolve_files

ERROR_MARKER = "[yt8m_xmodal.DataError] "
# How a DataError starts when TF's error names no record.
_UNNAMED_FAILURE = "the input pipeline failed: "
_MARKED_ERROR = re.compile(re.escape(ERROR_MARKER) + r"([^\n]*)")
# How TF's parse ops name the record they failed on (we pass file:index as
# the example name).
_TF_RECORD_NAME = re.compile(r"(?:example id|Name): ([^,\s]+)")
# How TF's parse ops quote a record that is not a protobuf: its bytes to the
# end of the message, or to the first NUL byte.
_QUOTED_RECORD = re.compile(r"value: '.*", re.DOTALL)
_UNQUOTED_RECORD = "value: <not a protobuf>"


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
