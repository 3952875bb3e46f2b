"""Two-tower audio-video models, picked by name with `--model`.

Every model takes the reader's batch dictionary (see CONTRACTS.md) and returns
`{"video": [B, E], "audio": [B, E]}` linear, unnormalized embeddings (deep CCA
whitens them itself; InfoNCE normalizes inside the loss).

  ChunkAttentionModel  chunked GRU + attention over chunks (the method)
  ChunkMeanModel       the same chunks and GRU, mean over chunks (ablation)
  FrameLstmModel       one LSTM over all 300 frames (YT8M's LstmModel)
  MeanPoolModel        masked mean over frames + MLP
  VideoLevelMlpModel   mean_rgb / mean_audio records + MLP

`get_model(name, **config)` builds one from flag values; `train_dir` can store
`model.get_config()` so eval and inference rebuild the same model.
"""

import inspect

import keras
import tensorflow as tf

from yt8m_xmodal.errors import FlagError
from yt8m_xmodal.features import FEATURE_SIZES, MAX_FRAMES
from yt8m_xmodal.layers import (NORMALIZATION_KINDS, POSITION_ENCODINGS,
                                RNN_TYPES)
from yt8m_xmodal.towers import (CHUNK_POOLINGS, ChunkAttentionTower,
                                FrameLstmTower, MeanPoolTower,
                                VideoLevelMlpTower)

VIDEO_SIZE, AUDIO_SIZE = FEATURE_SIZES


def frame_mask(batch, num_frames):
    """The [B, T] bool mask of valid frames: `mask`, else from `num_frames`."""
    if batch.get("mask") is not None:
        return tf.cast(batch["mask"], tf.bool)
    if batch.get("num_frames") is not None:
        return tf.sequence_mask(batch["num_frames"], num_frames)
    return None


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class CrossModalModel(keras.Model):
    """A video tower and an audio tower applied to one batch dictionary.

    Args:
      video_tower: a tower for `batch["video"]`: one from towers.py, or any
        keras.Model with `call(features, mask=None, training=None)`.
      audio_tower: a tower for `batch["audio"]`, likewise.
      frame_level: True for [B, T, D] frame batches (with `mask` or
        `num_frames`), False for [B, D] video-level batches.

    Call arguments:
      inputs: the batch dictionary; only "video", "audio" and (frame level)
        "mask" / "num_frames" are read, other keys are ignored.
      training: enables dropout.
      return_attention: for towers with chunk attention, also return
        "video_attention" / "audio_attention" [B, C] chunk weights.

    Example:
    >>> model = CrossModalModel(MeanPoolTower(8), MeanPoolTower(4))
    >>> out = model({"video": tf.ones([2, 5, 8]), "audio": tf.ones([2, 5, 4]),
    ...              "mask": tf.sequence_mask([5, 3], 5)})
    >>> out["video"].shape, out["audio"].shape
    (TensorShape([2, 64]), TensorShape([2, 64]))
    """

    def __init__(self, video_tower, audio_tower, frame_level=True, **kwargs):
        super().__init__(**kwargs)
        self.video_tower = video_tower
        self.audio_tower = audio_tower
        self.frame_level = bool(frame_level)

    @property
    def has_attention(self):
        return all(getattr(tower, "has_attention", False)
                   for tower in (self.video_tower, self.audio_tower))

    def build(self, input_shape):
        for key, tower in (("video", self.video_tower),
                           ("audio", self.audio_tower)):
            if key not in input_shape:
                raise ValueError(f"the batch has no {key!r} feature")
            self._check_feature_size(key, tower, input_shape[key])
            # Towers deserialized from a .keras file arrive already built.
            if not tower.built:
                tower.build(tuple(input_shape[key]))
        self.built = True

    def _check_feature_size(self, key, tower, shape):
        rank = 3 if self.frame_level else 2
        if len(shape) != rank:
            level = "frame-level" if self.frame_level else "video-level"
            raise FlagError(
                f"{self.name} is a {level} model and expects {key!r} of rank "
                f"{rank}, got shape {tuple(shape)}; check --frame_features "
                "and --model")
        # Any keras.Model can be a tower; the package's towers know their size.
        input_size = getattr(tower, "input_size", None)
        if None not in (shape[-1], input_size) and int(shape[-1]) != input_size:
            raise FlagError(
                f"{key!r} features have size {shape[-1]} but {self.name} was "
                f"built for {key}_size={input_size}; check "
                "--feature_sizes")

    def call(self, inputs, training=None, return_attention=False):
        outputs = {}
        for key, tower in (("video", self.video_tower),
                           ("audio", self.audio_tower)):
            features = tf.convert_to_tensor(inputs[key])
            self._check_feature_size(key, tower, features.shape)
            kwargs = {"training": training}
            if self.frame_level:
                num_frames = features.shape[1] or tf.shape(features)[1]
                kwargs["mask"] = frame_mask(inputs, num_frames)
            if return_attention and getattr(tower, "has_attention", False):
                outputs[key], outputs[f"{key}_attention"] = tower(
                    features, return_attention=True, **kwargs)
            else:
                outputs[key] = tower(features, **kwargs)
        return outputs

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "frame_level": self.frame_level,
                "video_tower": keras.saving.serialize_keras_object(
                    self.video_tower),
                "audio_tower": keras.saving.serialize_keras_object(
                    self.audio_tower)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("video_tower", "audio_tower"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


class _NamedModel(CrossModalModel):
    """A CrossModalModel defined by flat flag values (its get_config)."""

    frame_level = True

    def _init_towers(self, tower_class, video_size, audio_size, kwargs,
                     **tower_config):
        self._flag_config = {"video_size": int(video_size),
                             "audio_size": int(audio_size), **tower_config}
        video_tower = tower_class(video_size, name="video_tower",
                                  **tower_config)
        audio_tower = tower_class(audio_size, name="audio_tower",
                                  **tower_config)
        CrossModalModel.__init__(self, video_tower, audio_tower,
                                 frame_level=type(self).frame_level, **kwargs)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                **self._flag_config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class ChunkAttentionModel(_NamedModel):
    """Chunk-attention towers for both modalities (the method).

    Args (defaults in parentheses; all are `--flags` of train.py):
      video_size (1024), audio_size (128): feature sizes.
      embedding_dim (64): shared embedding size E.
      chunk_size (30): frames per chunk; 300 frames -> 10 chunks.
      rnn_type ("gru"): gru | lstm | bigru | bilstm.
      rnn_units (128): recurrent width per direction.
      attention ("additive"): additive | multihead.
      attention_units (128), num_heads (4): attention sizes.
      position_encoding ("learned"): slot | learned | sinusoidal | none (with
        slot, embedding_dim must be a multiple of the chunk positions,
        ceil(max_frames / chunk_size); see ChunkAttentionTower).
      max_frames (300): longest video, sizes the learned position table.
      hidden_units (256), num_hidden_layers (1): projection head MLP.
      dropout (0.0), input_norm ("l2"): see ChunkAttentionTower.
      unroll (False): unroll the chunk_size-step recurrence.
      skip_empty_chunks (True): run the recurrence on non-empty chunks only
        (data-dependent shapes: turn off for XLA).
      input_projection_units (0): 0, or P for a linear per-frame projection
        to P features before the chunk recurrence (see ChunkRecurrentEncoder).
    """

    def __init__(self, video_size=VIDEO_SIZE, audio_size=AUDIO_SIZE,
                 embedding_dim=64, chunk_size=30, rnn_type="gru",
                 rnn_units=128, attention="additive", attention_units=128,
                 num_heads=4, position_encoding="learned",
                 max_frames=MAX_FRAMES, hidden_units=256, num_hidden_layers=1,
                 dropout=0.0, input_norm="l2", unroll=False,
                 skip_empty_chunks=True, input_projection_units=0, **kwargs):
        self._init_towers(
            ChunkAttentionTower, video_size, audio_size, kwargs,
            embedding_dim=embedding_dim, chunk_size=chunk_size,
            rnn_type=rnn_type, rnn_units=rnn_units, attention=attention,
            attention_units=attention_units, num_heads=num_heads,
            position_encoding=position_encoding, max_frames=max_frames,
            hidden_units=hidden_units, num_hidden_layers=num_hidden_layers,
            dropout=dropout, input_norm=input_norm, unroll=unroll,
            skip_empty_chunks=skip_empty_chunks,
            input_projection_units=input_projection_units)


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class ChunkMeanModel(_NamedModel):
    """The ChunkAttentionModel with a masked mean over chunks (no attention).

    The ablation that shows what attention adds. Args as ChunkAttentionModel,
    without the attention ones; `return_attention` gives the uniform weights.
    """

    def __init__(self, video_size=VIDEO_SIZE, audio_size=AUDIO_SIZE,
                 embedding_dim=64, chunk_size=30, rnn_type="gru",
                 rnn_units=128, position_encoding="learned",
                 max_frames=MAX_FRAMES, hidden_units=256, num_hidden_layers=1,
                 dropout=0.0, input_norm="l2", unroll=False,
                 skip_empty_chunks=True, input_projection_units=0, **kwargs):
        self._init_towers(
            ChunkAttentionTower, video_size, audio_size, kwargs,
            embedding_dim=embedding_dim, chunk_size=chunk_size,
            rnn_type=rnn_type, rnn_units=rnn_units, attention="mean",
            position_encoding=position_encoding, max_frames=max_frames,
            hidden_units=hidden_units, num_hidden_layers=num_hidden_layers,
            dropout=dropout, input_norm=input_norm, unroll=unroll,
            skip_empty_chunks=skip_empty_chunks,
            input_projection_units=input_projection_units)
        # "attention" is fixed, not a flag of this model.
        self._flag_config.pop("attention")


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class FrameLstmModel(_NamedModel):
    """One LSTM per modality over the whole frame sequence, no chunks.

    Args: video_size, audio_size, embedding_dim, rnn_units, hidden_units,
    num_hidden_layers, dropout, input_norm as ChunkAttentionModel;
    rnn_type defaults to "lstm".
    """

    def __init__(self, video_size=VIDEO_SIZE, audio_size=AUDIO_SIZE,
                 embedding_dim=64, rnn_type="lstm", rnn_units=128,
                 hidden_units=256, num_hidden_layers=1, dropout=0.0,
                 input_norm="l2", **kwargs):
        self._init_towers(
            FrameLstmTower, video_size, audio_size, kwargs,
            embedding_dim=embedding_dim, rnn_type=rnn_type,
            rnn_units=rnn_units, hidden_units=hidden_units,
            num_hidden_layers=num_hidden_layers, dropout=dropout,
            input_norm=input_norm)


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class MeanPoolModel(_NamedModel):
    """Masked mean over frames, then an MLP, per modality.

    Args: video_size, audio_size, embedding_dim, hidden_units,
    num_hidden_layers, dropout, input_norm as ChunkAttentionModel.
    """

    def __init__(self, video_size=VIDEO_SIZE, audio_size=AUDIO_SIZE,
                 embedding_dim=64, hidden_units=256, num_hidden_layers=1,
                 dropout=0.0, input_norm="l2", **kwargs):
        self._init_towers(
            MeanPoolTower, video_size, audio_size, kwargs,
            embedding_dim=embedding_dim, hidden_units=hidden_units,
            num_hidden_layers=num_hidden_layers, dropout=dropout,
            input_norm=input_norm)


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class VideoLevelMlpModel(_NamedModel):
    """An MLP per modality on video-level records (mean_rgb, mean_audio).

    Args: video_size, audio_size, embedding_dim, hidden_units,
    num_hidden_layers, dropout, input_norm as ChunkAttentionModel.
    """

    frame_level = False

    def __init__(self, video_size=VIDEO_SIZE, audio_size=AUDIO_SIZE,
                 embedding_dim=64, hidden_units=256, num_hidden_layers=1,
                 dropout=0.0, input_norm="l2", **kwargs):
        self._init_towers(
            VideoLevelMlpTower, video_size, audio_size, kwargs,
            embedding_dim=embedding_dim, hidden_units=hidden_units,
            num_hidden_layers=num_hidden_layers, dropout=dropout,
            input_norm=input_norm)


MODELS = {cls.__name__: cls for cls in (
    ChunkAttentionModel, ChunkMeanModel, FrameLstmModel, MeanPoolModel,
    VideoLevelMlpModel)}


def config_names(model_class):
    """The flag names a model class takes (its __init__ arguments)."""
    parameters = inspect.signature(model_class.__init__).parameters
    return tuple(name for name, p in parameters.items()
                 if name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD)


# Every flag name some model takes; a name outside this set is a typo.
ALL_CONFIG_NAMES = frozenset(
    name for cls in MODELS.values() for name in config_names(cls))

_CHOICES = {"rnn_type": RNN_TYPES, "attention": CHUNK_POOLINGS[:-1],
            "position_encoding": POSITION_ENCODINGS,
            "input_norm": NORMALIZATION_KINDS}
_POSITIVE = ("video_size", "audio_size", "embedding_dim", "chunk_size",
             "rnn_units", "attention_units", "num_heads", "max_frames",
             "hidden_units")


def check_config(config):
    """Raises FlagError, naming the flag, for a value no model can use."""
    for name, choices in _CHOICES.items():
        if name in config and config[name] not in choices:
            raise FlagError(f"--{name}={config[name]!r} must be one of "
                            f"{', '.join(choices)}")
    for name in _POSITIVE:
        if name in config and int(config[name]) < 1:
            raise FlagError(f"--{name}={config[name]} must be >= 1")
    if int(config.get("input_projection_units", 0)) < 0:
        raise FlagError(f"--input_projection_units="
                        f"{config['input_projection_units']} must be >= 0 "
                        "(0: no projection)")
    if config.get("position_encoding") == "slot":
        positions = -(-int(config.get("max_frames", MAX_FRAMES))
                      // int(config.get("chunk_size", 30)))
        if int(config.get("embedding_dim", 64)) % positions:
            raise FlagError(
                f"--embedding_dim={config.get('embedding_dim', 64)} must be a "
                f"multiple of the {positions} chunk positions (--max_frames / "
                "--chunk_size, rounded up) with --position_encoding=slot: each "
                "position fills an equal slot of the embedding")
    if int(config.get("num_hidden_layers", 0)) < 0:
        raise FlagError(f"--num_hidden_layers={config['num_hidden_layers']} "
                        "must be >= 0")
    if not 0.0 <= float(config.get("dropout", 0.0)) < 1.0:
        raise FlagError(f"--dropout={config['dropout']} must be in [0, 1)")
    if (config.get("attention") == "multihead"
            and int(config.get("attention_units", 128))
            % int(config.get("num_heads", 4))):
        raise FlagError(
            f"--attention_units={config.get('attention_units', 128)} must be "
            f"divisible by --num_heads={config.get('num_heads', 4)}")


def get_model(name, **config):
    """Builds the model called `name` (a key of MODELS) from flag values.

    Config names that only other models use (e.g. `chunk_size` for
    MeanPoolModel) are ignored, so a trainer can pass all its model flags;
    names that no model takes raise FlagError, as do bad values.

    Raises:
      FlagError: naming `--model` for an unknown name, or the bad flag.
    """
    if name not in MODELS:
        raise FlagError(f"--model={name!r} is not a model; choose one of "
                        f"{', '.join(sorted(MODELS))}")
    unknown = sorted(set(config) - ALL_CONFIG_NAMES)
    if unknown:
        raise FlagError(f"unknown model config {unknown} for --model={name}; "
                        f"known: {', '.join(sorted(ALL_CONFIG_NAMES))}")
    check_config(config)
    model_class = MODELS[name]
    accepted = config_names(model_class)
    return model_class(**{k: v for k, v in config.items() if k in accepted})
