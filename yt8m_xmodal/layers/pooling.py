"""Masked mean pooling: the order-free baseline for frames and for chunks."""

import keras
import tensorflow as tf


def masked_mean_weights(mask, dtype=tf.float32):
    """Uniform weights over the valid positions of `mask` [B, N], rows sum to 1.

    A row with no valid position gets all-zero weights (not NaN).
    """
    mask = tf.cast(mask, dtype)
    count = tf.reduce_sum(mask, axis=-1, keepdims=True)
    return mask / tf.maximum(count, 1.0)


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean over axis 1 of [B, N, D], counting only positions where mask is set.

    Masked positions are excluded by selection (not by multiplying), so even
    NaN or junk past `num_frames` cannot reach the result; a sequence with
    no valid position pools to zeros.

    Args:
      (none besides the standard layer keyword arguments)

    Call arguments:
      inputs: float tensor [B, N, D].
      mask: optional bool tensor [B, N]; None means every position is valid.

    Example:
    >>> pool = MaskedMeanPooling()
    >>> pool(tf.ones([2, 4, 3]), mask=tf.sequence_mask([4, 1], 4)).shape
    TensorShape([2, 3])
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        self.built = True

    def compute_mask(self, inputs, previous_mask=None):
        # The mask is an explicit call argument and is consumed here; no
        # implicit Keras mask is attached to the outputs.
        return None

    def call(self, inputs, mask=None, training=None):
        inputs = tf.convert_to_tensor(inputs)
        if mask is None:
            mask = tf.ones(tf.shape(inputs)[:2], tf.bool)
        mask = tf.cast(mask, tf.bool)
        inputs = tf.where(mask[..., tf.newaxis], inputs, tf.zeros_like(inputs))
        count = tf.reduce_sum(tf.cast(mask, inputs.dtype), axis=1,
                              keepdims=True)
        return tf.reduce_sum(inputs, axis=1) / tf.maximum(count, 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
