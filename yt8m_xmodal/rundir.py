"""What a run directory holds, written so that a reader never sees half a
file: `model_flags.json` (the run's `TrainConfig`, as in the YouTube-8M
starter code, from which eval.py and inference.py rebuild the model) and
`train_result.json` (what a finished run reports), plus the atomic writes
and staged directories every writer here uses.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile

from yt8m_xmodal import config as config_lib
from yt8m_xmodal.errors import ConfigError

MODEL_FLAGS_FILE = "model_flags.json"
# What a finished run leaves in train_dir for scripts and benchmarks to read
# (the printed summary is for people and may change).
TRAIN_RESULT_FILE = "train_result.json"


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


@contextlib.contextmanager
def staged_directory(final, prefix=".tmp-"):
    """Yields a temporary directory beside `final` to write into; when the
    block succeeds it replaces `final` by a rename, so a reader sees the old
    directory or the whole new one, never half of it. Either way the
    temporary directory is gone afterwards."""
    tmp = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(final)),
                           prefix=prefix)
    try:
        yield tmp
        if os.path.lexists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def write_model_flags(directory, config):
    atomic_write_text(os.path.join(directory, MODEL_FLAGS_FILE),
                      config.to_json())


def read_model_flags(train_dir):
    """Reads the `TrainConfig` in `train_dir/model_flags.json`.

    Raises:
      ConfigError: naming `train_dir` when the directory or file is missing
        or was written by an incompatible version.
    """
    if not os.path.isdir(train_dir):
        raise ConfigError("{train_dir} does not exist", train_dir=train_dir)
    path = os.path.join(train_dir, MODEL_FLAGS_FILE)
    if not os.path.exists(path):
        raise ConfigError(
            f"{{train_dir}} holds no {MODEL_FLAGS_FILE}: it was not written "
            "by train.py (train a model there first)", train_dir=train_dir)
    try:
        with open(path) as f:
            d = json.load(f)
        version = d.get("version")
        if version != config_lib.MODEL_FLAGS_VERSION:
            raise ConfigError(
                f"{path} has version {version}; this package reads version "
                f"{config_lib.MODEL_FLAGS_VERSION} (retrain with this version)")
        return config_lib.TrainConfig.from_dict(d)
    except ConfigError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"{path} is not a model_flags.json this version can read ({e!r}); "
            "was the train_dir made by an incompatible version or model?"
        ) from None


def write_train_result(result):
    """Writes `train_dir/train_result.json`: a `training.TrainResult` as
    JSON."""
    record = dataclasses.asdict(result)
    record["examples_per_second"] = result.examples_per_second
    atomic_write_text(
        os.path.join(result.train_dir, TRAIN_RESULT_FILE),
        json.dumps(record, indent=2, sort_keys=True, default=float))
