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


def define_flags(flag_values=flags.FLAGS):
    """Defines the tool's flags, `synthetic.SyntheticConfig`'s fields, on
    `flag_values` (tests pass a fresh one)."""
    cli.define_config_flags(synthetic.SyntheticConfig, flag_values=flag_values)


def run_from_flags(flag_values=flags.FLAGS):
    """Runs `synthetic.generate_dataset` with parsed flags; returns the
    dataset.json content.

    Raises:
      ConfigError: from the tool, naming the argument (the flag of the same
        name; `cli.run` shows it as the flag).
    """
    cfg = cli.config_from_flags(synthetic.SyntheticConfig, flag_values)
    names, sizes = features.parse_feature_lists(
        cfg.feature_names or features.default_feature_names(
            cfg.frame_features), cfg.feature_sizes)
    return synthetic.generate_dataset(
        cfg.output_dir, num_videos=cfg.num_videos, seed=cfg.seed,
        num_shards=cfg.num_shards, frame_features=cfg.frame_features,
        min_frames=cfg.min_frames, max_frames=cfg.max_frames,
        feature_sizes=sizes, num_classes=cfg.num_classes, feature_names=names,
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
