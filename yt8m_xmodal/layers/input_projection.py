"""A fixed linear map of the input features, fitted on the training set.

The video-level recipe's towers start from the top linear-CCA directions of
the (L2-normalized) mean features instead of the raw 1,024 + 128 dimensions:
on tens of thousands of videos a tower learns a correction to linear CCA more
reliably than the correlated directions themselves. The map is fitted before
training (see `training.Trainer.fit_input_projection`) and saved with the
model as non-trainable weights, so an export needs nothing else.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class InputProjection(keras.layers.Layer):
    """x -> (x - mean) @ projection, with fixed (non-trainable) weights.

    Until `set_projection` is called the layer keeps the first `units`
    coordinates (mean 0, projection [I; 0]), so an unfitted model is defined.

    Args:
      units: output size (at most the input size).

    Call arguments:
      inputs: float tensor [..., D].

    Example:
    >>> layer = InputProjection(2)
    >>> layer.build((None, 3))
    >>> layer.set_projection(np.zeros(3), np.eye(3)[:, :2])
    >>> layer(tf.ones([4, 3])).shape
    TensorShape([4, 2])
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        size = int(input_shape[-1])
        if self.units > size:
            raise ValueError(f"{self.name}: units={self.units} exceeds the "
                             f"input size {size}")
        self.input_size = size
        self.mean = self.add_weight(name="mean", shape=(size,),
                                    initializer="zeros", trainable=False)
        self.projection = self.add_weight(
            name="projection", shape=(size, self.units),
            initializer=keras.initializers.Identity(), trainable=False)
        self.built = True

    def set_projection(self, mean, projection):
        """Sets the map from a fit ([D] mean, [D, units] projection)."""
        mean = tf.cast(tf.convert_to_tensor(mean), self.mean.dtype)
        projection = tf.cast(tf.convert_to_tensor(projection),
                             self.projection.dtype)
        if tuple(mean.shape) != tuple(self.mean.shape) or tuple(
                projection.shape) != tuple(self.projection.shape):
            raise ValueError(
                f"{self.name}: expected a mean of shape {tuple(self.mean.shape)}"
                f" and a projection of shape {tuple(self.projection.shape)}, "
                f"got {tuple(mean.shape)} and {tuple(projection.shape)}")
        self.mean.assign(mean)
        self.projection.assign(projection)

    def call(self, inputs):
        inputs = tf.convert_to_tensor(inputs)
        return tf.matmul(inputs - tf.cast(self.mean, inputs.dtype),
                         tf.cast(self.projection, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config
