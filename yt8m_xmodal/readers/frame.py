"""`YT8MFrameFeatureReader`: frame-level YT8M SequenceExamples (uint8
frames, one per second) as batches of dequantized frames, `num_frames` and
`mask`, by the wire-format fast path (`wire.py`) when a batch is regular and
`parse_sequence_example` otherwise.
"""

import tensorflow as tf

from yt8m_xmodal import features
from yt8m_xmodal.errors import ConfigError
from yt8m_xmodal.readers.dataset import (
    BaseReader, REASON_CODE, VIEWS, lenient_context_features)
from yt8m_xmodal.readers.wire import (
    frame_header, locate_lists, regular_frames, regular_headers_ok)


class YT8MFrameFeatureReader(BaseReader):
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
                view: (frame_header(size), len(frame_header(size)) + size)
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
        record (bool [B]), `locate_lists`'s offsets, and per view the
        list's bytes (uint8 [B, max_frames * stride], zero past the list:
        cut out of each record with one `substr` and one `decode_raw`, so
        that the frames are a fixed-stride reshape away)."""
        located = locate_lists(serialized, self.feature_names, self._layout)
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
                     & regular_headers_ok(block, frames, header, stride))
            blocks[view] = block
        return fast, located, blocks

    def _parse_any(self, names, serialized):
        """Parses any batch with `parse_sequence_example`: every frame becomes
        its own string before the decode."""
        video_name, audio_name = self.feature_names
        context, lists, lengths = tf.io.parse_sequence_example(
            serialized,
            context_features=lenient_context_features(self.id_feature),
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
        name = self.feature_names[VIEWS.index(view)]
        size = self.feature_sizes[VIEWS.index(view)]
        context, lists, lengths = tf.io.parse_sequence_example(
            serialized,
            context_features=lenient_context_features(self.id_feature),
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
            lenient_context_features(self.id_feature), example_names=names)
        stream_frames = [located["video_frames"], located["audio_frames"]]
        num_frames, mask = self._frame_mask(stream_frames)
        batch = {"id": context[self.id_feature], "_labels": context["labels"]}
        frame_checks = []
        for view, size, count in zip(("video", "audio"), self.feature_sizes,
                                     stream_frames):
            batch[view] = regular_frames(blocks[view], mask,
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
                           REASON_CODE["bad_frame_size"], reasons)
        reasons = tf.where(has_video != has_audio,
                           REASON_CODE["missing_feature_list"], reasons)
        reasons = tf.where(~has_video & ~has_audio,
                           REASON_CODE["zero_frames"], reasons)
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


@tf.function(jit_compile=True)
def _dequantize_frames(codes, mask):
    """YT8M dequantization of uint8 frames [B,T,D], zero where `mask` is off.

    XLA fuses the cast, scale, shift and select into one pass over the batch;
    as separate ops they are four passes over a tensor too big for the cache,
    which made this the slowest step of the reader (bench/bench_reader.py).
    """
    return tf.where(mask[:, :, None], features.dequantize(codes), 0.0)
