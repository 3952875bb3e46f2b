r"""Cuts a reproducible music subset out of YouTube-8M shards.

    python -m yt8m_xmodal.cli.subset --noframe_features \
        --input_data_pattern=/data/yt8m/video/train*.tfrecord \
        --output_dir=/data/yt8m_music --vocabulary_file=/data/yt8m/vocabulary.csv

writes `train-00000-of-0000N.tfrecord` ... `test-...tfrecord` shards in
the input's own YT8M format and a `manifest.json` that says what was kept,
what was dropped and why. Without --frame_features / --noframe_features the
level is that of the first input record (as for train.py), and so is the id
key (--id_feature: id, or video_id in the 2017 release). The rules, the split
and the manifest are described in yt8m_xmodal/subset/; the flags are
the fields of `subset.SubsetConfig`, which the Beam pipeline
(`python -m yt8m_xmodal.pipelines.subset`) takes too.
"""

import sys

from absl import flags

from yt8m_xmodal import cli
from yt8m_xmodal import subset
from yt8m_xmodal.cli import FlagError


def define_flags(flag_values=flags.FLAGS):
    """Defines the tool's flags, `subset.SubsetConfig`'s fields, on
    `flag_values` (tests pass a fresh one)."""
    cli.define_config_flags(subset.SubsetConfig, flag_values=flag_values)


def run_from_flags(flag_values=flags.FLAGS, progress=sys.stderr):
    """Runs `subset.extract_subset` with parsed flags; returns the manifest.

    Raises:
      ConfigError, DataError: from the tool, naming the argument (the flag of
        the same name; `cli.run` shows it as the flag) or the file.
    """
    cfg = cli.config_from_flags(subset.SubsetConfig, flag_values)
    return subset.extract_subset(
        cfg.input_data_pattern, cfg.output_dir, overwrite=cfg.overwrite,
        target_shard_mb=cfg.target_shard_mb, progress=progress,
        **cfg.arguments())


def main(argv):
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {argv[1:]}")
    run_from_flags()


def run():
    """The command's entry point."""
    define_flags()
    cli.run(main)


if __name__ == "__main__":
    run()
