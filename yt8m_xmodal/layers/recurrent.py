"""Recurrent reading of frames: inside each chunk, or over a whole video."""

import keras
import tensorflow as tf

RNN_TYPES = ("gru", "lstm", "bigru", "bilstm")


def make_rnn(rnn_type, units, name="rnn"):
    """A masked GRU/LSTM (optionally bidirectional) returning its last output.

    The output size is `units`, or 2 * `units` for the bidirectional kinds.
    """
    if rnn_type not in RNN_TYPES:
        raise ValueError(
            f"rnn_type must be one of {RNN_TYPES}, got {rnn_type!r}")
    cell = keras.layers.LSTM if rnn_type.endswith("lstm") else keras.layers.GRU
    if rnn_type.startswith("bi"):
        return keras.layers.Bidirectional(
            cell(units), merge_mode="concat", name=name)
    return cell(units, name=name)


def rnn_output_size(rnn_type, units):
    return 2 * units if rnn_type.startswith("bi") else units


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class ChunkRecurrentEncoder(keras.layers.Layer):
    """Summarizes every chunk with one recurrent pass over its frames.

    All chunks of all videos run in parallel as one batch [B*C, L, D], so the
    recurrence is only L steps deep instead of T: that is where chunking gets
    its speed over a full-sequence LSTM. Padded frames are masked (the state
    carries over them), and chunks with no valid frame come out as zeros.

    Args:
      units: recurrent width.
      rnn_type: "gru", "lstm", "bigru" or "bilstm"; bidirectional kinds output
        2 * units (forward and backward final states, concatenated).
      input_projection_units: 0 (none), or the size P of a linear projection
        (a Dense with bias, no activation) applied to every frame before the
        recurrence. The cell's input kernel then is P x 3H (GRU) instead of
        D x 3H; for 1024-d rgb frames and P = H = 128 that cuts the per-frame
        multiply-adds of the input side from 393k to 180k (a CPU train step
        is mostly matmul work: bench/bench_models.py). It factors the input
        kernel through rank P, the usual per-frame bottleneck of video models.
        Empty chunks are skipped before the projection too.

    Call arguments:
      inputs: float tensor [B, C, L, D] from `ChunkSplit`.
      mask: bool tensor [B, C, L] of valid frames (None: all valid).

    Returns:
      Float tensor [B, C, H] of chunk summaries.

    Example:
    >>> encoder = ChunkRecurrentEncoder(16, rnn_type="bigru")
    >>> encoder(tf.ones([2, 3, 30, 8])).shape
    TensorShape([2, 3, 32])
    """

    def __init__(self, units=128, rnn_type="gru", input_projection_units=64,
                 **kwargs):
        super().__init__(**kwargs)
        # Masks are explicit call arguments (see compute_mask).
        self.supports_masking = True
        self.units = int(units)
        self.rnn_type = rnn_type
        if int(input_projection_units) < 0:
            raise ValueError("input_projection_units must be >= 0, got "
                             f"{input_projection_units}")
        self.input_projection_units = int(input_projection_units)
        self.projection = (
            keras.layers.Dense(self.input_projection_units,
                               name="input_projection")
            if self.input_projection_units else None)
        self.rnn = make_rnn(rnn_type, self.units)

    @property
    def output_size(self):
        return rnn_output_size(self.rnn_type, self.units)

    def build(self, input_shape):
        chunk_size, feature_size = input_shape[-2], input_shape[-1]
        if self.projection is not None:
            self.projection.build((None, chunk_size, feature_size))
            feature_size = self.input_projection_units
        self.rnn.build((None, chunk_size, feature_size))
        self.built = True

    def compute_mask(self, inputs, previous_mask=None):
        # The mask is an explicit call argument and is consumed here; no
        # implicit Keras mask is attached to the outputs.
        return None

    def call(self, inputs, mask=None, training=None):
        inputs = tf.convert_to_tensor(inputs)
        shape = tf.shape(inputs)
        batch_size, num_chunks = shape[0], shape[1]
        chunk_size, feature_size = inputs.shape[2], inputs.shape[3]
        frames = tf.reshape(inputs, [-1, chunk_size, feature_size])
        if mask is None:
            mask = tf.ones(shape[:3], tf.bool)
        mask = tf.cast(mask, tf.bool)
        frame_mask = tf.reshape(mask, [-1, chunk_size])
        chunk_mask = tf.reduce_any(frame_mask, axis=-1)  # [B*C]
        # Only chunks with a valid frame run through the recurrence (gather,
        # run, scatter back): chunks are independent, so the padding of short
        # videos costs nothing, which a full-sequence RNN cannot offer.
        valid = tf.cast(tf.where(chunk_mask), tf.int32)  # [N, 1]
        summaries = self.rnn(self._project(tf.gather_nd(frames, valid)),
                             mask=tf.gather_nd(frame_mask, valid),
                             training=training)
        summaries = tf.scatter_nd(
            valid, summaries,
            tf.stack([batch_size * num_chunks, self.output_size]))
        return tf.reshape(summaries,
                          [batch_size, num_chunks, self.output_size])

    def _project(self, frames):
        return frames if self.projection is None else self.projection(frames)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.output_size)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "rnn_type": self.rnn_type,
                       "input_projection_units": self.input_projection_units})
        return config
