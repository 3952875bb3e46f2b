"""Flags shared by the scripts, and their one-line error handling.

Each root script (train.py, eval.py, inference.py) defines its own flags at
its top, as in the YouTube-8M starter code; the reader flags that all of them
share are defined once here.
"""

import logging
import os
import sys

from absl import app
from absl import flags

from yt8m_xmodal import config as config_lib
from yt8m_xmodal import features
from yt8m_xmodal.errors import DataError, FlagError


def define_data_flags():
    """YT8M's reader flags: --frame_features, --feature_names, ..."""
    flags.DEFINE_bool(
        "frame_features", True,
        "If set, read frame-level SequenceExamples (rgb/audio per frame); "
        "otherwise video-level Examples (mean_rgb/mean_audio).")
    flags.DEFINE_string(
        "feature_names", "",
        "Comma-separated feature names: the video view, then the audio view. "
        "Empty: rgb,audio at frame level, mean_rgb,mean_audio at video level.")
    flags.DEFINE_string("feature_sizes", "1024,128",
                        "Comma-separated sizes of the features in --feature_names.")
    flags.DEFINE_integer("max_frames", features.MAX_FRAMES,
                         "Frames per video kept; longer videos are truncated.")
    flags.DEFINE_integer("num_classes", features.NUM_CLASSES,
                         "Size of the label vocabulary.")
    flags.DEFINE_bool("skip_corrupt", False,
                      "Skip corrupt records and shards (counted and reported) "
                      "instead of stopping with an error.")


def data_config_from_flags():
    f = flags.FLAGS
    return config_lib.DataConfig.from_flags(
        f.frame_features, f.feature_names, f.feature_sizes, f.max_frames,
        f.num_classes)


def check_output_path(flag_name, path):
    """Fails early, naming the flag, when `path`'s directory does not exist."""
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FlagError(f"--{flag_name}={path}: directory {directory} does not "
                        "exist")


def run(main):
    """absl's app.run, with user errors as one line and no stack trace."""

    def guarded(argv):
        logging.basicConfig(format="%(message)s", level=logging.INFO)
        logging.getLogger("yt8m_xmodal").setLevel(logging.INFO)
        try:
            return main(argv)
        except (FlagError, DataError) as e:
            name = sys.argv[0].rsplit("/", 1)[-1]
            print(f"{name}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    app.run(guarded)
