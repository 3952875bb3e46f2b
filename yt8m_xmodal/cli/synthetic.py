r"""Writes the built-in demo data: a music-like audio-video dataset in the
YT8M format, with the oracle and baselines it supports in dataset.json.

    python -m yt8m_xmodal.cli.synthetic --output_dir=/tmp/demo --num_videos=2000

--noframe_features writes video-level mean_rgb/mean_audio Examples instead of
frame-level SequenceExamples. The generative model and dataset.json are
described in yt8m_xmodal/tools/synthetic.py; each flag is the argument of the
same name of `synthetic.generate_dataset`.
"""

import logging

from absl import flags

from yt8m_xmodal import cli
from yt8m_xmodal import features
from yt8m_xmodal.cli import FlagError
from yt8m_xmodal.tools import synthetic

log = logging.getLogger("yt8m_xmodal")


# (name, default, help): each flag is the argument of the same name of
# `synthetic.generate_dataset`.
_FLAGS = (
    ("output_dir", None, "Where to write the shards and dataset.json."),
    ("num_videos", synthetic.DEFAULT_NUM_VIDEOS,
     "Total videos, split 80/10/10 train/validate/test."),
    ("seed", 0, "Seed of everything generated."),
    ("num_shards", synthetic.DEFAULT_NUM_SHARDS,
     "Train shards; validate and test get a quarter."),
    ("frame_features", True, "Frame-level SequenceExamples (rgb, audio); "
     "else video-level mean_rgb, mean_audio Examples."),
    ("min_frames", synthetic.DEFAULT_MIN_FRAMES, "Shortest video, in frames."),
    ("max_frames", synthetic.DEFAULT_MAX_FRAMES, "Longest video, in frames."),
    ("feature_sizes", "1024,128", "Video and audio feature sizes."),
    ("feature_names", None, "Video and audio feature names; default "
                            "rgb,audio (frame level) or mean_rgb,mean_audio."),
    ("num_classes", synthetic.DEFAULT_NUM_CLASSES, "Number of genre labels."),
)


def define_flags(flag_values=flags.FLAGS):
    """Defines the tool's flags on `flag_values` (tests pass a fresh one)."""
    cli.define_flag_table(_FLAGS, flag_values)


def run_from_flags(flag_values=flags.FLAGS):
    """Runs `synthetic.generate_dataset` with parsed flags; returns the
    dataset.json content.

    Raises:
      FlagError: --output_dir is missing.
      ConfigError: from the tool, naming the argument (the flag of the same
        name; `cli.run` shows it as the flag).
    """
    if not flag_values.output_dir:
        raise FlagError("--output_dir is required")
    names = flag_values.feature_names or ",".join(
        features.default_feature_names(flag_values.frame_features))
    names, sizes = features.parse_feature_lists(
        names, flag_values.feature_sizes)
    return synthetic.generate_dataset(
        flag_values.output_dir, num_videos=flag_values.num_videos,
        seed=flag_values.seed, num_shards=flag_values.num_shards,
        frame_features=flag_values.frame_features,
        min_frames=flag_values.min_frames,
        max_frames=flag_values.max_frames, feature_sizes=sizes,
        num_classes=flag_values.num_classes, feature_names=names,
        log=log.info)


def main(argv):
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {argv[1:]}")
    info = run_from_flags()
    print(f"wrote {flags.FLAGS.output_dir} in "
          f"{info['generation_seconds']:.1f} s")
    print(synthetic.summary(info))


def run():
    """The command's entry point."""
    define_flags()
    cli.run(main)


if __name__ == "__main__":
    run()
