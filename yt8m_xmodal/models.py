"""Two-tower audio-video models, picked by name with `--model`.

Every model takes the reader's batch dictionary (see `readers`) and returns
`{"video": [B, E], "audio": [B, E]}` linear, unnormalized embeddings (deep CCA
whitens them itself; InfoNCE normalizes inside the loss).

  ChunkAttentionModel  chunked GRU + attention over chunks (the method;
                       attention="mean" is the ablation without attention)
  FrameLstmModel       one LSTM over all 300 frames (YT8M's LstmModel)
  MeanPoolModel        masked mean over frames + MLP
  VideoLevelMlpModel   mean_rgb / mean_audio records + MLP
  LinearCcaModel       identity towers (either level): linear CCA on the
                       (mean) features, the baseline with nothing to train

Each named model takes the feature sizes and the fields of its config class
(config.py) as keyword arguments, with the config's defaults: the shipped
recipe. `model_from_config(name, data, model_config)` builds one from typed configs (`modeling.build_model` adds the subspace).
"""

import dataclasses

import keras
import tensorflow as tf

from yt8m_xmodal import config as config_lib
from yt8m_xmodal.errors import ConfigError
from yt8m_xmodal.features import FEATURE_SIZES, MAX_FRAMES
from yt8m_xmodal.towers import (ChunkAttentionTower, FrameLstmTower,
                                IdentityTower, MeanPoolTower,
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
            raise ConfigError(
                f"{self.name} is a {level} model and expects {key!r} of rank "
                f"{rank}, got shape {tuple(shape)}; check {{frame_features}} "
                "and {model}", frame_features=self.frame_level,
                model=type(self).__name__)
        # Any keras.Model can be a tower; the package's towers know their size.
        input_size = getattr(tower, "input_size", None)
        if None not in (shape[-1], input_size) and int(shape[-1]) != input_size:
            raise ConfigError(
                f"{key!r} features have size {shape[-1]} but {self.name} was "
                f"built for {key}_size={input_size}; check {{feature_sizes}}",
                feature_sizes=f"{shape[-1]} (data)")

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


# Keyword arguments of keras.Model itself, passed through unchanged.
_KERAS_KWARGS = ("name", "trainable", "dtype")


class _ConfiguredModel(CrossModalModel):
    """A CrossModalModel whose towers are built from one config class.

    Keyword arguments are the feature sizes and the fields of
    `config_class`; `self.config` holds them typed, and `get_config()`
    returns exactly them.
    """

    config_class = None
    tower_class = None
    frame_level = True

    def __init__(self, video_size=VIDEO_SIZE, audio_size=AUDIO_SIZE,
                 tower_kwargs=None, **kwargs):
        keras_kwargs = {k: kwargs.pop(k) for k in _KERAS_KWARGS if k in kwargs}
        self.config = config_lib.model_config(type(self).__name__, kwargs)
        self.video_size, self.audio_size = int(video_size), int(audio_size)
        self._tower_kwargs = dict(tower_kwargs or {})
        towers = [self.tower_class(size, name=f"{key}_tower",
                                   **dataclasses.asdict(self.config),
                                   **self._tower_kwargs)
                  for key, size in (("video", self.video_size),
                                    ("audio", self.audio_size))]
        CrossModalModel.__init__(self, *towers,
                                 frame_level=type(self).frame_level,
                                 **keras_kwargs)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "video_size": self.video_size, "audio_size": self.audio_size,
                **self._tower_kwargs, **dataclasses.asdict(self.config)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class ChunkAttentionModel(_ConfiguredModel):
    """Chunk-attention towers for both modalities (the method).

    Args:
      video_size, audio_size: feature sizes (1024, 128).
      max_frames: the longest video (300), which fixes the chunk positions.
      **config: fields of `config.ChunkAttentionConfig` (chunk_size,
        rnn_type, attention, position_encoding, embedding_dim, ...), whose
        defaults are the shipped recipe; see ChunkAttentionTower.

    Example:
    >>> model = ChunkAttentionModel(chunk_size=100, embedding_dim=12)
    >>> out = model({"video": tf.ones([2, 300, 1024]),
    ...              "audio": tf.ones([2, 300, 128])})
    >>> out["audio"].shape
    TensorShape([2, 12])
    """

    config_class = config_lib.ChunkAttentionConfig
    tower_class = ChunkAttentionTower

    def __init__(self, video_size=VIDEO_SIZE, audio_size=AUDIO_SIZE,
                 max_frames=MAX_FRAMES, **config):
        super().__init__(video_size, audio_size,
                         tower_kwargs={"max_frames": int(max_frames)}, **config)


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class FrameLstmModel(_ConfiguredModel):
    """One LSTM per modality over the whole frame sequence, no chunks.

    Args: video_size, audio_size, and the fields of `config.FrameLstmConfig`.
    """

    config_class = config_lib.FrameLstmConfig
    tower_class = FrameLstmTower


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class MeanPoolModel(_ConfiguredModel):
    """Masked mean over frames, then an MLP, per modality.

    Args: video_size, audio_size, and the fields of `config.MeanPoolConfig`.
    """

    config_class = config_lib.MeanPoolConfig
    tower_class = MeanPoolTower


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class VideoLevelMlpModel(_ConfiguredModel):
    """An MLP per modality on video-level records (mean_rgb, mean_audio).

    Args: video_size, audio_size, and the fields of
    `config.VideoLevelMlpConfig`.
    """

    config_class = config_lib.VideoLevelMlpConfig
    tower_class = VideoLevelMlpTower
    frame_level = False


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class LinearCcaModel(CrossModalModel):
    """Identity towers: the post-hoc linear CCA subspace is the model.

    Linear CCA on the (L2-normalized) mean features, the classic baseline:
    the towers return the normalized features (frame level: their masked
    mean over frames), so training only fits the subspace and every trained
    model has this floor to beat.

    Args:
      video_size, audio_size: feature sizes (1024, 128).
      frame_level: True for frame-level records, False for video level.
      input_norm: per-frame (per-vector) normalization, as for the towers.
      linear_cca_ridge: ridge of the subspace fit (read by the trainer).

    Example:
    >>> model = LinearCcaModel(8, 4, frame_level=False)
    >>> model({"video": tf.ones([2, 8]), "audio": tf.ones([2, 4])})["audio"].shape
    TensorShape([2, 4])
    """

    def __init__(self, video_size=VIDEO_SIZE, audio_size=AUDIO_SIZE,
                 frame_level=True, **kwargs):
        keras_kwargs = {k: kwargs.pop(k) for k in _KERAS_KWARGS if k in kwargs}
        self.config = config_lib.model_config("LinearCcaModel", kwargs)
        self.video_size, self.audio_size = int(video_size), int(audio_size)
        towers = [IdentityTower(size, input_norm=self.config.input_norm,
                                frame_level=frame_level, name=f"{key}_tower")
                  for key, size in (("video", self.video_size),
                                    ("audio", self.audio_size))]
        super().__init__(*towers, frame_level=frame_level, **keras_kwargs)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "video_size": self.video_size, "audio_size": self.audio_size,
                "frame_level": self.frame_level,
                **dataclasses.asdict(self.config)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


MODELS = {cls.__name__: cls for cls in (
    ChunkAttentionModel, FrameLstmModel, MeanPoolModel, VideoLevelMlpModel,
    LinearCcaModel)}
assert set(MODELS) == set(config_lib.MODEL_CONFIGS)


def model_from_config(name, data, model_config=None):
    """The model `name` for records described by `data`, from its config.

    Args:
      name: a key of MODELS.
      data: a `config.DataConfig` (feature sizes, max_frames).
      model_config: the model's config (dataclass or dict); None: defaults.

    Raises:
      ConfigError: naming the field, for an unknown model or a bad value.
    """
    config = config_lib.model_config(name, model_config)
    model_class = MODELS[name]
    extra = {}
    if model_class is ChunkAttentionModel:
        extra = {"max_frames": data.max_frames}
    elif model_class is LinearCcaModel:
        extra = {"frame_level": data.frame_features}
    return model_class(video_size=data.video_size, audio_size=data.audio_size,
                       **extra, **dataclasses.asdict(config))
