"""Per-frame input normalization, as YouTube-8M models do it.

The YT8M starter code (train.py, `build_graph`) L2-normalizes every input
vector along the feature axis before the model sees it:
`tf.nn.l2_normalize(model_input_raw, feature_dim)`. For frame-level input that
is one L2 normalization per frame. That is the default here ("l2"), applied to
each modality on its own (the starter code normalizes the rgb+audio
concatenation because one model reads both; here each tower reads one). "layer" is a
learned alternative (LayerNormalization per frame) and "none" passes features
through. Padded frames are set to exactly zero whatever the kind, so they carry
no signal into later layers even when a reader leaves junk past `num_frames`.
"""

import keras
import tensorflow as tf

# "l2": YT8M practice; "layer": learned; "none": features as they are.
NORMALIZATION_KINDS = ("l2", "layer", "none")

# Keeps l2_normalize finite on the all-zero padded frames.
L2_EPSILON = 1e-12


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class FrameNormalization(keras.layers.Layer):
    """Normalizes each frame (or each video-level vector) on its last axis.

    Args:
      kind: "l2" (YT8M practice, no weights), "layer" (learned
        LayerNormalization) or "none".
      epsilon: small constant for the normalization.

    Call arguments:
      inputs: float tensor [..., D], e.g. [B, T, D] frames or [B, D] vectors.
      mask: optional bool tensor of `inputs.shape[:-1]`; masked positions are
        returned as zeros.

    Example:
    >>> layer = FrameNormalization("l2")
    >>> layer(tf.ones([2, 5, 8]), mask=tf.sequence_mask([5, 3], 5)).shape
    TensorShape([2, 5, 8])
    """

    def __init__(self, kind="l2", epsilon=L2_EPSILON, **kwargs):
        super().__init__(**kwargs)
        # Masks are explicit call arguments (see compute_mask).
        self.supports_masking = True
        if kind not in NORMALIZATION_KINDS:
            raise ValueError(f"input normalization must be one of "
                             f"{NORMALIZATION_KINDS}, got {kind!r}")
        self.kind = kind
        self.epsilon = epsilon
        self.layer_norm = None
        if kind == "layer":
            self.layer_norm = keras.layers.LayerNormalization(
                epsilon=max(epsilon, 1e-6), name="layer_norm")

    def build(self, input_shape):
        if self.layer_norm is not None:
            self.layer_norm.build(input_shape)
        self.built = True

    def compute_mask(self, inputs, previous_mask=None):
        # The mask is an explicit call argument and is consumed here; no
        # implicit Keras mask is attached to the outputs.
        return None

    def call(self, inputs, mask=None, training=None):
        inputs = tf.convert_to_tensor(inputs)
        if self.kind == "l2":
            outputs = tf.math.l2_normalize(inputs, axis=-1,
                                           epsilon=self.epsilon)
        elif self.kind == "layer":
            outputs = self.layer_norm(inputs)
        else:
            outputs = inputs
        if mask is not None:
            outputs = tf.where(tf.cast(mask, tf.bool)[..., tf.newaxis],
                               outputs, tf.zeros_like(outputs))
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"kind": self.kind, "epsilon": self.epsilon})
        return config
