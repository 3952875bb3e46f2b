"""Typed configuration and `train_dir/model_flags.json`.

As in the YouTube-8M starter code, train.py records the flags that define the
model in `train_dir/model_flags.json`, so eval.py and inference.py rebuild the
same model without repeating them. Here the file holds the three small configs
below.
"""

import dataclasses
import json
import os
import tempfile

from yt8m_xmodal import features
from yt8m_xmodal.errors import FlagError

MODEL_FLAGS_FILE = "model_flags.json"
MODEL_FLAGS_VERSION = 1


@dataclasses.dataclass
class DataConfig:
    """Which records to read and how: YT8M's reader flags."""

    frame_features: bool = True
    feature_names: tuple = features.FRAME_FEATURE_NAMES
    feature_sizes: tuple = features.FEATURE_SIZES
    max_frames: int = features.MAX_FRAMES
    num_classes: int = features.NUM_CLASSES

    @classmethod
    def from_flags(cls, frame_features, feature_names, feature_sizes,
                   max_frames, num_classes=features.NUM_CLASSES):
        """Builds the config from YT8M-style flag values.

        An empty `feature_names` means the level's default (`rgb,audio` or
        `mean_rgb,mean_audio`).
        """
        if not feature_names:
            feature_names = features.default_feature_names(frame_features)
        names, sizes = features.parse_feature_flags(feature_names, feature_sizes)
        if max_frames < 1:
            raise FlagError(f"--max_frames={max_frames} must be >= 1")
        return cls(bool(frame_features), names, sizes, int(max_frames),
                   int(num_classes))

    @property
    def video_size(self):
        return self.feature_sizes[0]

    @property
    def audio_size(self):
        return self.feature_sizes[1]


@dataclasses.dataclass
class ModelFlags:
    """Everything eval.py and inference.py need to rebuild a trained model."""

    data: DataConfig
    model: str
    model_config: dict
    loss: str
    loss_config: dict
    subspace_dim: int
    version: int = MODEL_FLAGS_VERSION

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d):
        data = dict(d["data"])
        data["feature_names"] = tuple(data["feature_names"])
        data["feature_sizes"] = tuple(data["feature_sizes"])
        return cls(
            data=DataConfig(**data), model=d["model"],
            model_config=dict(d["model_config"]), loss=d["loss"],
            loss_config=dict(d["loss_config"]),
            subspace_dim=int(d["subspace_dim"]),
            version=int(d.get("version", MODEL_FLAGS_VERSION)))


def atomic_write_text(path, text):
    """Writes `text` to `path` so a reader never sees a truncated file.

    The text goes to a temporary file in the same directory, is fsync'ed and
    then renamed over `path` (rename is atomic on POSIX file systems).
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_model_flags(train_dir, model_flags):
    atomic_write_text(os.path.join(train_dir, MODEL_FLAGS_FILE),
                      model_flags.to_json())


def read_model_flags(train_dir):
    """Reads `train_dir/model_flags.json`.

    Raises:
      FlagError: naming `--train_dir` when the directory or file is missing or
        was written by an incompatible version.
    """
    if not os.path.isdir(train_dir):
        raise FlagError(f"--train_dir={train_dir} does not exist")
    path = os.path.join(train_dir, MODEL_FLAGS_FILE)
    if not os.path.exists(path):
        raise FlagError(
            f"--train_dir={train_dir} holds no {MODEL_FLAGS_FILE}: it was not "
            "written by train.py (train a model there first)")
    try:
        with open(path) as f:
            d = json.load(f)
        flags = ModelFlags.from_dict(d)
    except (ValueError, KeyError, TypeError) as e:
        raise FlagError(
            f"{path} is not a model_flags.json this version can read ({e!r}); "
            "was the train_dir made by an incompatible version or model?"
        ) from None
    if flags.version != MODEL_FLAGS_VERSION:
        raise FlagError(
            f"{path} has version {flags.version}; this package reads version "
            f"{MODEL_FLAGS_VERSION}")
    return flags
