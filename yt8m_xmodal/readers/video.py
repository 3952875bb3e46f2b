"""`YT8MAggregatedFeatureReader`: video-level YT8M Examples (one float
vector per view) as batches."""

import tensorflow as tf

from yt8m_xmodal import features
from yt8m_xmodal.readers.dataset import (
    BaseReader, REASON_CODE, VIEWS, lenient_context_features)


class YT8MAggregatedFeatureReader(BaseReader):
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
        spec = lenient_context_features(self.id_feature)
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
                               REASON_CODE["non_finite"], reasons)
            batch[key] = values
        wrong_size = ((lengths[0] != self.feature_sizes[0])
                      | (lengths[1] != self.feature_sizes[1]))
        reasons = tf.where(wrong_size, REASON_CODE["bad_feature_size"], reasons)
        return batch, reasons, tuple(lengths)

    def parse_one_view(self, serialized, view):
        """Parses records that need to hold only one modality, for serving:
        {"id", view: [B, D]}; a missing or wrong-size vector, or NaN, fails
        the call with an InvalidArgumentError naming the feature."""
        name = self.feature_names[VIEWS.index(view)]
        size = self.feature_sizes[VIEWS.index(view)]
        spec = lenient_context_features(self.id_feature)
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
