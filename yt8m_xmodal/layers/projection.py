"""Projection head into the shared audio-video embedding space."""

import keras
import tensorflow as tf



@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class ProjectionHead(keras.layers.Layer):
    """An MLP whose last layer is linear: [B, H] -> [B, embedding_dim].

    The output is deliberately left linear and unnormalized: deep CCA whitens
    the embeddings itself and needs a full-rank batch covariance, which an
    L2 normalization or a final ReLU would damage; InfoNCE normalizes inside
    the loss.

    Args:
      embedding_dim: E, size of the shared embedding.
      hidden_units: sizes of the hidden layers (empty: one linear map).
      activation: activation of the hidden layers.
      dropout: dropout rate after each hidden layer (training only).
      output_initializer: kernel initializer of the last (linear) layer;
        "zeros" makes the head start as the zero map (for a residual tower).

    Call arguments:
      inputs: float tensor [B, H].
      training: enables dropout.

    Example:
    >>> ProjectionHead(64, hidden_units=(128,))(tf.ones([4, 32])).shape
    TensorShape([4, 64])
    """

    def __init__(self, embedding_dim=120, hidden_units=(256,), activation="relu",
                 dropout=0.0, output_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.output_initializer = output_initializer
        self.embedding_dim = int(embedding_dim)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.dropout = float(dropout)
        # One attribute per sub-layer, not a list: tf.train.Checkpoint's
        # object graph does not see Keras 3's tracked lists.
        for i, units in enumerate(self.hidden_units):
            setattr(self, f"hidden_{i}", keras.layers.Dense(
                units, activation=activation, name=f"hidden_{i}"))
            setattr(self, f"dropout_{i}",
                    keras.layers.Dropout(self.dropout, name=f"dropout_{i}"))
        self.output_dense = keras.layers.Dense(
            self.embedding_dim, kernel_initializer=output_initializer,
            name="embedding")

    @property
    def hidden(self):
        return [getattr(self, f"hidden_{i}")
                for i in range(len(self.hidden_units))]

    @property
    def dropouts(self):
        return [getattr(self, f"dropout_{i}")
                for i in range(len(self.hidden_units))]

    def build(self, input_shape):
        size = input_shape[-1]
        for dense in self.hidden:
            dense.build((None, size))
            size = dense.units
        self.output_dense.build((None, size))
        self.built = True

    def call(self, inputs, training=None):
        outputs = tf.convert_to_tensor(inputs)
        for dense, dropout in zip(self.hidden, self.dropouts):
            outputs = dropout(dense(outputs), training=training)
        return self.output_dense(outputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.embedding_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"embedding_dim": self.embedding_dim,
                       "hidden_units": list(self.hidden_units),
                       "activation": self.activation,
                       "dropout": self.dropout,
                       "output_initializer": self.output_initializer})
        return config
