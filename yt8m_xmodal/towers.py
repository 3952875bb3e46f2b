"""One-modality towers: a frame sequence (or a video-level vector) -> [B, E].

Each tower is a `keras.Model` built from the layers in `yt8m_xmodal.layers`;
the two-tower models in `models.py` hold one tower per modality.

  ChunkAttentionTower  chunks -> recurrent encoder -> chunk positions
                       -> attention over chunks (or mean, the ablation) -> head
  FrameLstmTower       one recurrent pass over all T frames -> head
  MeanPoolTower        masked mean over frames -> head
  VideoLevelMlpTower   a video-level vector (mean_rgb / mean_audio)
                       -> optional linear-CCA input projection -> head
  IdentityTower        the normalized features (their mean over frames)
"""

import keras
import tensorflow as tf

from yt8m_xmodal import config as config_lib
from yt8m_xmodal.config import CHUNK_POOLINGS
from yt8m_xmodal.features import MAX_FRAMES
from yt8m_xmodal.layers.chunking import num_chunk_positions
from yt8m_xmodal.layers import (ChunkAttentionPooling,
                                ChunkPositionEncoding, ChunkRecurrentEncoder,
                                ChunkSplit, FrameNormalization,
                                InputProjection, MaskedMeanPooling, ProjectionHead, make_rnn,
                                masked_mean_weights)

# Each tower's defaults are its model family's config (config.py): one
# definition of the shipped recipe.
_HEAD = config_lib.VideoLevelMlpConfig
_CHUNK = config_lib.ChunkAttentionConfig
_LSTM = config_lib.FrameLstmConfig


def _check_input_size(tower, input_shape):
    size = input_shape[-1]
    if size is not None and int(size) != tower.input_size:
        raise ValueError(
            f"{tower.name} expects features of size {tower.input_size} but got "
            f"inputs of shape {tuple(input_shape)}")


class _Tower(keras.Model):
    """Shared plumbing: explicit masks, projection head, config round trip."""

    has_attention = False

    def __init__(self, input_size, embedding_dim=_HEAD.embedding_dim,
                 hidden_units=_HEAD.hidden_units,
                 num_hidden_layers=_HEAD.num_hidden_layers,
                 dropout=_HEAD.dropout, input_norm=_HEAD.input_norm,
                 head_dim=None, **kwargs):
        super().__init__(**kwargs)
        # Masks are explicit call arguments; nothing implicit is attached.
        self.supports_masking = True
        self.input_size = int(input_size)
        self.embedding_dim = int(embedding_dim)
        self.hidden_units = int(hidden_units)
        self.num_hidden_layers = int(num_hidden_layers)
        self.dropout = float(dropout)
        self.input_norm = input_norm
        self.normalization = FrameNormalization(input_norm,
                                                name="normalization")
        # head_dim: towers whose head maps parts of the video (see
        # ChunkAttentionTower's slots) give its output size; else E.
        self.head = ProjectionHead(
            head_dim or self.embedding_dim,
            hidden_units=(self.hidden_units,) * self.num_hidden_layers,
            dropout=self.dropout, name="projection_head")

    def build(self, input_shape):
        """Weights of towers that pool (or take) one vector per video; towers
        with more layers between normalization and head override this."""
        _check_input_size(self, input_shape)
        self.normalization.build(input_shape)
        self.head.build((None, self.input_size))
        self.built = True

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "input_size": self.input_size,
                "embedding_dim": self.embedding_dim,
                "hidden_units": self.hidden_units,
                "num_hidden_layers": self.num_hidden_layers,
                "dropout": self.dropout, "input_norm": self.input_norm}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class ChunkAttentionTower(_Tower):
    """Chunked recurrent reading of frames, pooled by attention over chunks.

    Frames are L2-normalized (YT8M practice), cut into chunks of `chunk_size`
    frames, each chunk is summarized by a GRU/LSTM running over all chunks in
    parallel, a chunk-position encoding is added, and attention over the
    valid chunks pools them into one vector for the projection head.

    Args:
      input_size: D, feature size of each frame (1024 rgb, 128 audio).
      embedding_dim: E, output size.
      chunk_size: frames per chunk.
      rnn_type: "gru", "lstm", "bigru" or "bilstm".
      rnn_units: recurrent width (per direction).
      attention: "additive", "multihead", or "mean" (masked mean over chunks,
        no attention weights learned: the ablation that shows what attention
        adds).
      attention_units: hidden size of the attention scorer / key size.
      num_heads: heads of multihead attention.
      position_encoding: "slot", "learned", "sinusoidal" or "none" (see
        ChunkPositionEncoding). With "slot" the projection head runs on
        every chunk summary (one head shared by all positions) and writes
        its E / P outputs into the chunk's slot, P = ceil(max_frames /
        chunk_size) positions; the pooled slots are the embedding, so E must
        be a multiple of P. Otherwise the head runs once, on the pooled
        summary.
      max_frames: longest input, sizes the learned position table.
      hidden_units, num_hidden_layers: hidden MLP of the projection head.
      dropout: on chunk summaries and in the projection head.
      input_norm: "l2", "layer" or "none" (see FrameNormalization).
      input_projection_units: 0 (none) or P, a linear per-frame projection
        of the normalized frames to P features before the chunk recurrence
        (see ChunkRecurrentEncoder): fewer parameters and fewer
        multiply-adds per 1024-d rgb frame.

    Call arguments:
      inputs: float tensor [B, T, D].
      mask: bool tensor [B, T] of valid frames (None: all valid).
      training: enables dropout.
      return_attention: also return the chunk weights [B, C].

    Example:
    >>> tower = ChunkAttentionTower(128, embedding_dim=16, rnn_units=8)
    >>> tower(tf.ones([2, 75, 128]), mask=tf.sequence_mask([75, 40], 75)).shape
    TensorShape([2, 16])
    """

    has_attention = True

    def __init__(self, input_size, embedding_dim=_CHUNK.embedding_dim,
                 chunk_size=_CHUNK.chunk_size, rnn_type=_CHUNK.rnn_type,
                 rnn_units=_CHUNK.rnn_units, attention=_CHUNK.attention,
                 attention_units=_CHUNK.attention_units,
                 num_heads=_CHUNK.num_heads,
                 position_encoding=_CHUNK.position_encoding,
                 max_frames=MAX_FRAMES, hidden_units=_CHUNK.hidden_units,
                 num_hidden_layers=_CHUNK.num_hidden_layers,
                 dropout=_CHUNK.dropout, input_norm=_CHUNK.input_norm,
                 input_projection_units=_CHUNK.input_projection_units,
                 **kwargs):
        num_positions = num_chunk_positions(max_frames, chunk_size)
        slots = position_encoding == "slot"
        if slots and int(embedding_dim) % num_positions:
            raise ValueError(
                f"embedding_dim={embedding_dim} must be a multiple of the "
                f"{num_positions} chunk positions (max_frames={max_frames} / "
                f"chunk_size={chunk_size}) with slot position encoding")
        super().__init__(input_size, embedding_dim=embedding_dim,
                         hidden_units=hidden_units,
                         num_hidden_layers=num_hidden_layers, dropout=dropout,
                         input_norm=input_norm,
                         head_dim=(int(embedding_dim) // num_positions
                                   if slots else None), **kwargs)
        if attention not in CHUNK_POOLINGS:
            raise ValueError(f"attention must be one of {CHUNK_POOLINGS}, "
                             f"got {attention!r}")
        self.chunk_size = int(chunk_size)
        self.rnn_type = rnn_type
        self.rnn_units = int(rnn_units)
        self.attention = attention
        self.attention_units = int(attention_units)
        self.num_heads = int(num_heads)
        self.position_encoding = position_encoding
        self.max_frames = int(max_frames)
        self.input_projection_units = int(input_projection_units)
        self.split = ChunkSplit(self.chunk_size, name="chunk_split")
        self.encoder = ChunkRecurrentEncoder(
            self.rnn_units, rnn_type=rnn_type,
            input_projection_units=self.input_projection_units,
            name="chunk_encoder")
        self.position = ChunkPositionEncoding(
            position_encoding,
            max_chunks=self.split.num_chunks(self.max_frames),
            name="chunk_position")
        self.chunk_dropout = keras.layers.Dropout(self.dropout,
                                                  name="chunk_dropout")
        if attention == "mean":
            self.pooling = MaskedMeanPooling(name="chunk_pooling")
        else:
            self.pooling = ChunkAttentionPooling(
                attention, units=self.attention_units, num_heads=self.num_heads,
                name="chunk_pooling")

    @property
    def slots(self):
        return self.position_encoding == "slot"

    def build(self, input_shape):
        _check_input_size(self, input_shape)
        self.normalization.build(input_shape)
        self.encoder.build((None, None, self.chunk_size, self.input_size))
        summary_shape = (None, None, self.encoder.output_size)
        if self.slots:
            self.head.build(summary_shape)
            summary_shape = self.head.compute_output_shape(summary_shape)
        self.position.build(summary_shape)
        summary_shape = self.position.compute_output_shape(summary_shape)
        self.pooling.build(summary_shape)
        if not self.slots:
            self.head.build((None, summary_shape[-1]))
        self.built = True

    def call(self, inputs, mask=None, training=None, return_attention=False):
        frames = self.normalization(inputs, mask=mask)
        chunks, frame_mask, chunk_mask = self.split(frames, mask=mask)
        summaries = self.encoder(chunks, mask=frame_mask, training=training)
        if self.slots:
            summaries = self.head(summaries, training=training)
        summaries = self.position(summaries)
        summaries = self.chunk_dropout(summaries, training=training)
        if self.attention == "mean":
            pooled = self.pooling(summaries, mask=chunk_mask)
            weights = masked_mean_weights(chunk_mask, pooled.dtype)
        else:
            pooled, weights = self.pooling(summaries, mask=chunk_mask,
                                           return_attention=True)
        embedding = pooled if self.slots else self.head(pooled,
                                                         training=training)
        if return_attention:
            return embedding, weights
        return embedding

    def get_config(self):
        config = super().get_config()
        config.update({
            "chunk_size": self.chunk_size, "rnn_type": self.rnn_type,
            "rnn_units": self.rnn_units, "attention": self.attention,
            "attention_units": self.attention_units,
            "num_heads": self.num_heads,
            "position_encoding": self.position_encoding,
            "max_frames": self.max_frames,
            "input_projection_units": self.input_projection_units})
        return config


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class FrameLstmTower(_Tower):
    """One recurrent pass over the whole frame sequence (YT8M's LstmModel).

    The recurrence is T steps deep (300 for full videos); padded frames are
    masked, so the final state is the one after the last real frame.

    Args:
      input_size: D, feature size of each frame.
      embedding_dim: E, output size.
      rnn_type: "lstm" (default), "gru", "bilstm" or "bigru".
      rnn_units: recurrent width (per direction).
      hidden_units, num_hidden_layers, dropout, input_norm: as in
        ChunkAttentionTower.

    Call arguments:
      inputs: float tensor [B, T, D].
      mask: bool tensor [B, T] of valid frames (None: all valid).
      training: enables dropout.

    Example:
    >>> tower = FrameLstmTower(128, embedding_dim=16, rnn_units=8)
    >>> tower(tf.ones([2, 40, 128])).shape
    TensorShape([2, 16])
    """

    def __init__(self, input_size, embedding_dim=_LSTM.embedding_dim,
                 rnn_type=_LSTM.rnn_type, rnn_units=_LSTM.rnn_units,
                 hidden_units=_LSTM.hidden_units,
                 num_hidden_layers=_LSTM.num_hidden_layers,
                 dropout=_LSTM.dropout, input_norm=_LSTM.input_norm, **kwargs):
        super().__init__(input_size, embedding_dim=embedding_dim,
                         hidden_units=hidden_units,
                         num_hidden_layers=num_hidden_layers, dropout=dropout,
                         input_norm=input_norm, **kwargs)
        self.rnn_type = rnn_type
        self.rnn_units = int(rnn_units)
        self.rnn = make_rnn(rnn_type, self.rnn_units, name="frame_rnn")
        self.rnn_dropout = keras.layers.Dropout(self.dropout,
                                                name="rnn_dropout")

    def build(self, input_shape):
        _check_input_size(self, input_shape)
        self.normalization.build(input_shape)
        self.rnn.build((None, None, self.input_size))
        self.head.build((None, 2 * self.rnn_units if self.rnn_type.startswith(
            "bi") else self.rnn_units))
        self.built = True

    def call(self, inputs, mask=None, training=None):
        frames = self.normalization(inputs, mask=mask)
        if mask is not None:
            mask = tf.cast(mask, tf.bool)
        summary = self.rnn(frames, mask=mask, training=training)
        summary = self.rnn_dropout(summary, training=training)
        return self.head(summary, training=training)

    def get_config(self):
        config = super().get_config()
        config.update({"rnn_type": self.rnn_type, "rnn_units": self.rnn_units})
        return config


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class MeanPoolTower(_Tower):
    """Masked mean over L2-normalized frames, then the projection MLP.

    Order-free by construction: the baseline that shows what temporal
    modelling adds.

    Args:
      input_size: D, feature size of each frame.
      embedding_dim, hidden_units, num_hidden_layers, dropout, input_norm: as
        in ChunkAttentionTower.

    Call arguments:
      inputs: float tensor [B, T, D].
      mask: bool tensor [B, T] of valid frames (None: all valid).
      training: enables dropout.

    Example:
    >>> MeanPoolTower(128, embedding_dim=16)(tf.ones([2, 40, 128])).shape
    TensorShape([2, 16])
    """

    def __init__(self, input_size,
                 embedding_dim=config_lib.MeanPoolConfig.embedding_dim,
                 **kwargs):
        super().__init__(input_size, embedding_dim=embedding_dim, **kwargs)
        self.pooling = MaskedMeanPooling(name="frame_pooling")

    def call(self, inputs, mask=None, training=None):
        frames = self.normalization(inputs, mask=mask)
        return self.head(self.pooling(frames, mask=mask), training=training)


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class VideoLevelMlpTower(_Tower):
    """A video-level vector (mean_rgb / mean_audio), L2-normalized, then MLP.

    Args:
      input_size: D, size of the video-level vector.
      embedding_dim, hidden_units, num_hidden_layers, dropout, input_norm: as
        in ChunkAttentionTower.
      cca_input_dim: N > 0 inserts an `InputProjection` to N dimensions
        between the normalization and the head; its weights are set from a
        linear CCA fit before training (`training.Trainer`), until then it
        keeps the first N coordinates.
      cca_input_ridge: the ridge of that fit (read by the trainer).
      linear_skip: output = projected[:, :embedding_dim] + head(projected),
        with the head's last layer initialized at zero.

    Call arguments:
      inputs: float tensor [B, D].
      training: enables dropout.

    Example:
    >>> VideoLevelMlpTower(128, embedding_dim=16)(tf.ones([2, 128])).shape
    TensorShape([2, 16])
    >>> VideoLevelMlpTower(128, embedding_dim=16, cca_input_dim=32,
    ...                    linear_skip=True)(tf.ones([2, 128])).shape
    TensorShape([2, 16])
    """

    def __init__(self, input_size, cca_input_dim=_HEAD.cca_input_dim,
                 cca_input_ridge=_HEAD.cca_input_ridge,
                 linear_skip=_HEAD.linear_skip, **kwargs):
        super().__init__(input_size, **kwargs)
        self.cca_input_dim = int(cca_input_dim)
        self.cca_input_ridge = float(cca_input_ridge)
        self.linear_skip = bool(linear_skip)
        if self.linear_skip and self.cca_input_dim < self.embedding_dim:
            raise ValueError(f"{self.name}: linear_skip needs cca_input_dim="
                             f"{self.cca_input_dim} >= embedding_dim="
                             f"{self.embedding_dim}")
        self.input_projection = None
        if self.cca_input_dim:
            self.input_projection = InputProjection(self.cca_input_dim,
                                                    name="input_projection")
        if self.linear_skip:
            # The tower starts as the identity on the projected coordinates.
            self.head = ProjectionHead(
                self.embedding_dim,
                hidden_units=(self.hidden_units,) * self.num_hidden_layers,
                dropout=self.dropout, output_initializer="zeros",
                name="projection_head")

    def build(self, input_shape):
        _check_input_size(self, input_shape)
        self.normalization.build(input_shape)
        size = self.input_size
        if self.input_projection is not None:
            self.input_projection.build((None, size))
            size = self.cca_input_dim
        self.head.build((None, size))
        self.built = True

    def call(self, inputs, mask=None, training=None):
        x = self.normalization(inputs)
        if self.input_projection is not None:
            x = self.input_projection(x)
        out = self.head(x, training=training)
        if self.linear_skip:
            out = out + x[:, :self.embedding_dim]
        return out

    def get_config(self):
        return {**super().get_config(), "cca_input_dim": self.cca_input_dim,
                "cca_input_ridge": self.cca_input_ridge,
                "linear_skip": self.linear_skip}


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class IdentityTower(keras.Model):
    """The normalized features themselves (frame level: their masked mean).

    The towers of `LinearCcaModel`: nothing to train, so the post-hoc linear
    CCA subspace is the whole model.

    Args:
      input_size: D, the feature size (the embedding size too).
      input_norm: "l2", "layer" or "none", as in ChunkAttentionTower (at
        frame level applied per frame before the mean).
      frame_level: inputs are [B, T, D] frames (else [B, D] vectors).

    Call arguments:
      inputs: float tensor [B, T, D] or [B, D].
      mask: frame level: bool tensor [B, T] of valid frames.

    Example:
    >>> IdentityTower(8, frame_level=False)(tf.ones([2, 8])).shape
    TensorShape([2, 8])
    """

    has_attention = False

    def __init__(self, input_size, input_norm="l2", frame_level=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.input_size = int(input_size)
        self.embedding_dim = self.input_size
        self.input_norm = input_norm
        self.frame_level = bool(frame_level)
        self.normalization = FrameNormalization(input_norm,
                                                name="normalization")
        self.pooling = MaskedMeanPooling(name="frame_pooling")

    def build(self, input_shape):
        _check_input_size(self, input_shape)
        self.normalization.build(input_shape)
        self.built = True

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def call(self, inputs, mask=None, training=None):
        if not self.frame_level:
            return self.normalization(inputs)
        return self.pooling(self.normalization(inputs, mask=mask), mask=mask)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "input_size": self.input_size, "input_norm": self.input_norm,
                "frame_level": self.frame_level}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
