"""Attention pooling over chunks, with masked chunks excluded."""

import math

import keras
import tensorflow as tf


# The learned kinds; a masked mean is MaskedMeanPooling.
ATTENTION_KINDS = ("additive", "multihead")


def masked_softmax(scores, mask):
    """Softmax over the last axis, exactly zero where mask is False.

    Masked scores are replaced (not offset) before the softmax and the weights
    are selected again afterwards, so padded chunks can neither take weight nor
    change the weights of real chunks. A row with no valid entry gets zeros.
    """
    mask = tf.cast(mask, tf.bool)
    scores = tf.where(mask, scores, tf.fill(tf.shape(scores), scores.dtype.min))
    weights = tf.nn.softmax(scores, axis=-1)
    return tf.where(mask, weights, tf.zeros_like(weights))


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class ChunkAttentionPooling(keras.layers.Layer):
    """Pools chunk summaries [B, C, H] into one vector [B, H] by attention.

    "additive": Bahdanau-style scoring, s_c = v . tanh(W h_c + b), and the
    output is sum_c a_c h_c.
    "multihead": `num_heads` learned queries (one per head) attend over keys
    and values projected from the chunks; the heads are concatenated and
    projected back to H. The weights returned are the mean over heads.

    In both kinds masked chunks get weight exactly zero and their values are
    zeroed, so padding chunks can never change the result.

    Args:
      kind: "additive" or "multihead".
      units: hidden size of the additive scorer; for multihead the total
        key/value size (must be divisible by `num_heads`).
      num_heads: heads of the multihead kind.

    Call arguments:
      inputs: float tensor [B, C, H].
      mask: bool tensor [B, C] of valid chunks (None: all valid).
      return_attention: also return the weights [B, C] (rows sum to 1 over
        valid chunks).

    Example:
    >>> pool = ChunkAttentionPooling("multihead", units=16, num_heads=4)
    >>> pooled, weights = pool(tf.ones([2, 5, 8]), return_attention=True)
    >>> pooled.shape, weights.shape
    (TensorShape([2, 8]), TensorShape([2, 5]))
    """

    def __init__(self, kind="additive", units=128, num_heads=4, **kwargs):
        super().__init__(**kwargs)
        # Masks are explicit call arguments (see compute_mask).
        self.supports_masking = True
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, "
                             f"got {kind!r}")
        if kind == "multihead" and int(units) % int(num_heads):
            raise ValueError(f"attention units ({units}) must be divisible "
                             f"by num_heads ({num_heads})")
        self.kind = kind
        self.units = int(units)
        self.num_heads = int(num_heads)
        if kind == "additive":
            self.score_hidden = keras.layers.Dense(
                self.units, activation="tanh", name="score_hidden")
            self.score = keras.layers.Dense(1, use_bias=False, name="score")
        else:
            # No key bias: it adds the same score to every chunk, which the
            # softmax cancels, so it could never learn anything.
            self.key = keras.layers.Dense(self.units, use_bias=False,
                                          name="key")
            self.value = keras.layers.Dense(self.units, name="value")
            self.output_projection = None

    @property
    def head_size(self):
        return self.units // self.num_heads

    def build(self, input_shape):
        input_size = input_shape[-1]
        if self.kind == "additive":
            self.score_hidden.build((None, None, input_size))
            self.score.build((None, None, self.units))
        else:
            self.query = self.add_weight(
                name="query", shape=(self.num_heads, self.head_size),
                initializer="glorot_uniform")
            self.key.build((None, None, input_size))
            self.value.build((None, None, input_size))
            self.output_projection = keras.layers.Dense(
                input_size, name="output_projection")
            self.output_projection.build((None, self.units))
        self.built = True

    def compute_mask(self, inputs, previous_mask=None):
        # The mask is an explicit call argument and is consumed here; no
        # implicit Keras mask is attached to the outputs.
        return None

    def call(self, inputs, mask=None, training=None, return_attention=False):
        inputs = tf.convert_to_tensor(inputs)
        if mask is None:
            mask = tf.ones(tf.shape(inputs)[:2], tf.bool)
        mask = tf.cast(mask, tf.bool)
        inputs = tf.where(mask[..., tf.newaxis], inputs, tf.zeros_like(inputs))
        if self.kind == "additive":
            scores = self.score(self.score_hidden(inputs))[..., 0]  # [B, C]
            weights = masked_softmax(scores, mask)
            pooled = tf.einsum("bc,bch->bh", weights, inputs)
        else:
            shape = tf.shape(inputs)
            split = [shape[0], shape[1], self.num_heads, self.head_size]
            keys = tf.reshape(self.key(inputs), split)
            values = tf.reshape(self.value(inputs), split)
            scores = tf.einsum("bcnk,nk->bnc", keys, self.query)
            scores /= math.sqrt(self.head_size)
            head_weights = masked_softmax(scores, mask[:, tf.newaxis, :])
            heads = tf.einsum("bnc,bcnk->bnk", head_weights, values)
            pooled = self.output_projection(
                tf.reshape(heads, [shape[0], self.units]))
            weights = tf.reduce_mean(head_weights, axis=1)
        if return_attention:
            return pooled, weights
        return pooled

    def get_config(self):
        config = super().get_config()
        config.update({"kind": self.kind, "units": self.units,
                       "num_heads": self.num_heads})
        return config
