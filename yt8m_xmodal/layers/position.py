"""Chunk-position encodings: where in the video a chunk sits."""

import math

import keras
import tensorflow as tf

POSITION_ENCODINGS = ("learned", "sinusoidal", "projection", "none")
# Wavelength base of the sinusoidal encoding (Vaswani et al., 2017,
# "Attention Is All You Need", section 3.5).
SINUSOID_BASE = 10000.0
# Initial scale of learned position vectors (as BERT's position embeddings).
LEARNED_INIT_STDDEV = 0.02


def sinusoidal_encoding(num_positions, depth, dtype=tf.float32):
    """[num_positions, depth]: sin on even channels, cos on odd ones."""
    positions = tf.cast(tf.range(num_positions), tf.float32)[:, tf.newaxis]
    channel = tf.range(depth)
    # Channels 2i and 2i+1 share the frequency 1 / base^(2i / depth).
    exponent = tf.cast(channel - channel % 2, tf.float32) / float(depth)
    angles = positions * tf.exp(-math.log(SINUSOID_BASE) * exponent)
    encoding = tf.where(channel % 2 == 0, tf.sin(angles), tf.cos(angles))
    return tf.cast(encoding, dtype)


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class ChunkPositionEncoding(keras.layers.Layer):
    """Tells every chunk summary [B, C, H] where in the video it sits.

    Chunk c gets encoding c, whatever the padded length, so padding never
    shifts the positions of real chunks.

    "learned" and "sinusoidal" add a position vector. Pooling is a weighted
    sum, so an added vector reaches the pooled vector only as an offset (and
    through the attention weights): the pooled vector cannot tell what was
    said where. "projection" instead maps chunk c through its own linear map,
    h_c W_c + b_c ([H] -> [units]): the same content lands in a different
    direction at each position, so after pooling, matching an audio to a
    video compares chunk c with chunk c (a song's verse with its own
    verse) rather than only the average of all chunks.

    Args:
      kind: "learned" (a trainable [max_chunks, H] table), "sinusoidal"
        (fixed, any number of chunks), "projection" (trainable
        [max_chunks, H, units] maps and [max_chunks, units] biases) or
        "none" (identity).
      max_chunks: positions of the learned tables, ceil(max_frames /
        chunk_size); calling with more chunks is an error.
      units: output size of "projection" (None: H); the other kinds keep H.

    Call arguments:
      inputs: float tensor [B, C, H].

    Example:
    >>> ChunkPositionEncoding("sinusoidal")(tf.zeros([2, 10, 16])).shape
    TensorShape([2, 10, 16])
    """

    def __init__(self, kind="learned", max_chunks=10, units=None, **kwargs):
        super().__init__(**kwargs)
        if kind not in POSITION_ENCODINGS:
            raise ValueError(f"position encoding must be one of "
                             f"{POSITION_ENCODINGS}, got {kind!r}")
        self.kind = kind
        self.max_chunks = int(max_chunks)
        self.units = int(units) if units else None

    def build(self, input_shape):
        if self.kind == "learned":
            self.positions = self.add_weight(
                name="positions", shape=(self.max_chunks, input_shape[-1]),
                initializer=keras.initializers.TruncatedNormal(
                    stddev=LEARNED_INIT_STDDEV))
        elif self.kind == "projection":
            units = self.units or int(input_shape[-1])
            # Glorot over one position's map: fan in H, fan out units.
            self.kernels = self.add_weight(
                name="kernels", shape=(self.max_chunks, input_shape[-1], units),
                initializer=keras.initializers.VarianceScaling(
                    1.0, "fan_avg", "uniform"))
            self.biases = self.add_weight(
                name="biases", shape=(self.max_chunks, units),
                initializer="zeros")
        self.built = True

    def call(self, inputs, mask=None, training=None):
        inputs = tf.convert_to_tensor(inputs)
        if self.kind == "none":
            return inputs
        num_chunks = inputs.shape[1]
        if num_chunks is None:
            num_chunks = tf.shape(inputs)[1]
        if self.kind == "sinusoidal":
            encoding = sinusoidal_encoding(num_chunks, inputs.shape[-1],
                                           inputs.dtype)
            return inputs + encoding[tf.newaxis]
        if isinstance(num_chunks, int) and num_chunks > self.max_chunks:
            raise ValueError(
                f"{num_chunks} chunks but the learned position table has "
                f"{self.max_chunks} rows; raise max_frames or use "
                "sinusoidal position encoding")
        checks = []
        if not isinstance(num_chunks, int):
            checks.append(tf.debugging.assert_less_equal(
                num_chunks, self.max_chunks,
                message="more chunks than the learned position table "
                        "has rows; raise max_frames"))
        with tf.control_dependencies(checks):
            if self.kind == "projection":
                kernels = tf.cast(self.kernels[:num_chunks], inputs.dtype)
                biases = tf.cast(self.biases[:num_chunks], inputs.dtype)
                return tf.einsum("bch,chu->bcu", inputs, kernels) + biases
            encoding = tf.cast(self.positions[:num_chunks], inputs.dtype)
        return inputs + encoding[tf.newaxis]

    def compute_output_shape(self, input_shape):
        if self.kind == "projection":
            return (*input_shape[:-1], self.units or input_shape[-1])
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"kind": self.kind, "max_chunks": self.max_chunks,
                       "units": self.units})
        return config
