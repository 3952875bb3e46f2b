"""Cuts a frame sequence into fixed-size chunks, with frame and chunk masks."""

import keras
import tensorflow as tf


def num_chunk_positions(max_frames, chunk_size):
    """Chunk positions of a video of `max_frames` frames: ceil(T / L)."""
    return -(-int(max_frames) // int(chunk_size))

@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class ChunkSplit(keras.layers.Layer):
    """Splits [B, T, D] frames into [B, C, L, D] chunks, C = ceil(T / L).

    The time axis is zero-padded up to C * L. Frames that are padding (past
    `num_frames`, or added here) are zeroed and masked out in `frame_mask`;
    a chunk with no valid frame is masked out in `chunk_mask`, so later layers
    can drop it entirely. Chunk c always holds frames [c*L, (c+1)*L), so the
    same video padded to different lengths yields the same real chunks.

    Args:
      chunk_size: L, frames per chunk (YT8M frames are one per second).

    Call arguments:
      inputs: float tensor [B, T, D].
      mask: optional bool tensor [B, T] of valid frames; None means all valid.

    Returns:
      A tuple `(chunks [B, C, L, D], frame_mask [B, C, L] bool,
      chunk_mask [B, C] bool)`.

    Example:
    >>> chunks, frame_mask, chunk_mask = ChunkSplit(30)(
    ...     tf.ones([2, 75, 8]), mask=tf.sequence_mask([75, 20], 75))
    >>> chunks.shape, chunk_mask.numpy().tolist()
    (TensorShape([2, 3, 30, 8]), [[True, True, True], [True, False, False]])
    """

    def __init__(self, chunk_size=20, **kwargs):
        super().__init__(**kwargs)
        # Masks are explicit call arguments (see compute_mask).
        self.supports_masking = True
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = int(chunk_size)

    def build(self, input_shape):
        self.built = True

    def num_chunks(self, num_frames):
        """C for a static or dynamic number of frames T."""
        return (num_frames + self.chunk_size - 1) // self.chunk_size

    def compute_mask(self, inputs, previous_mask=None):
        # The mask is an explicit call argument and is consumed here; no
        # implicit Keras mask is attached to the outputs.
        return None

    def call(self, inputs, mask=None, training=None):
        inputs = tf.convert_to_tensor(inputs)
        batch_size = tf.shape(inputs)[0]
        num_frames = inputs.shape[1]
        if num_frames is None:
            num_frames = tf.shape(inputs)[1]
        feature_size = inputs.shape[-1]
        num_chunks = self.num_chunks(num_frames)
        padding = num_chunks * self.chunk_size - num_frames
        if mask is None:
            mask = tf.ones([batch_size, num_frames], tf.bool)
        mask = tf.cast(mask, tf.bool)
        inputs = tf.where(mask[..., tf.newaxis], inputs, tf.zeros_like(inputs))
        inputs = tf.pad(inputs, [[0, 0], [0, padding], [0, 0]])
        mask = tf.pad(mask, [[0, 0], [0, padding]], constant_values=False)
        chunks = tf.reshape(
            inputs, [batch_size, num_chunks, self.chunk_size, feature_size])
        frame_mask = tf.reshape(mask, [batch_size, num_chunks, self.chunk_size])
        chunk_mask = tf.reduce_any(frame_mask, axis=-1)
        return chunks, frame_mask, chunk_mask

    def get_config(self):
        config = super().get_config()
        config.update({"chunk_size": self.chunk_size})
        return config
