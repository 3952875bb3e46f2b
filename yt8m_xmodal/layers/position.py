"""Chunk-position encodings: where in the video a chunk sits."""

import math

import keras
import tensorflow as tf

from yt8m_xmodal.features import MAX_FRAMES
from yt8m_xmodal.layers.chunking import num_chunk_positions

POSITION_ENCODINGS = ("learned", "sinusoidal", "slot", "none")

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
    said where. "slot" instead gives every position its own slot: chunk c's
    vector is written into slot c of a [max_chunks * H] vector that is zero
    elsewhere. A weighted sum of such vectors is the concatenation of the
    weighted chunk vectors, so comparing two pooled vectors compares chunk
    c with chunk c (a song's verse with its own verse), and attention still
    decides how much each chunk counts.

    Args:
      kind: "learned" (a trainable [max_chunks, H] table), "sinusoidal"
        (fixed, any number of chunks), "slot" (no weights; output
        [max_chunks * H]) or "none" (identity).
      max_chunks: positions of the learned table and the slots,
        ceil(max_frames / chunk_size); calling with more chunks is an error.

    Call arguments:
      inputs: float tensor [B, C, H].

    Example:
    >>> ChunkPositionEncoding("sinusoidal")(tf.zeros([2, 10, 16])).shape
    TensorShape([2, 10, 16])
    """

    def __init__(self, kind="slot", max_chunks=num_chunk_positions(MAX_FRAMES, 20),
                 **kwargs):
        super().__init__(**kwargs)
        if kind not in POSITION_ENCODINGS:
            raise ValueError(f"position encoding must be one of "
                             f"{POSITION_ENCODINGS}, got {kind!r}")
        self.kind = kind
        self.max_chunks = int(max_chunks)

    def build(self, input_shape):
        if self.kind == "learned":
            self.positions = self.add_weight(
                name="positions", shape=(self.max_chunks, input_shape[-1]),
                initializer=keras.initializers.TruncatedNormal(
                    stddev=LEARNED_INIT_STDDEV))
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
            if self.kind == "slot":
                return self._to_slots(inputs, num_chunks)
            encoding = tf.cast(self.positions[:num_chunks], inputs.dtype)
        return inputs + encoding[tf.newaxis]

    def _to_slots(self, inputs, num_chunks):
        slots = tf.eye(num_chunks, self.max_chunks, dtype=inputs.dtype)
        out = tf.einsum("bch,cs->bcsh", inputs, slots)
        return tf.reshape(out, tf.concat(
            [tf.shape(out)[:2], [self.max_chunks * inputs.shape[-1]]], 0))

    def compute_output_shape(self, input_shape):
        if self.kind == "slot":
            return (*input_shape[:-1], self.max_chunks * input_shape[-1])
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"kind": self.kind, "max_chunks": self.max_chunks})
        return config
