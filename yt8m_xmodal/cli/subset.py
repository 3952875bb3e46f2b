r"""Cuts a reproducible music subset out of YouTube-8M shards.

    python -m yt8m_xmodal.cli.subset --noframe_features \
        --input_data_pattern=/data/yt8m/video/train*.tfrecord \
        --output_dir=/data/yt8m_music --vocabulary_file=/data/yt8m/vocabulary.csv

writes `train-00000-of-00008.tfrecord` ... `test-00007-of-00008.tfrecord` in
the input's own YT8M format and a `manifest.json` that says what was kept,
what was dropped and why. Without --frame_features / --noframe_features the
level is that of the first input record (as for train.py), and so is the id
key (--id_feature: id, or video_id in the 2017 release). The rules, the split
and the manifest are described in yt8m_xmodal/tools/subset.py; each flag is
the argument of the same name there.
"""

import sys

from absl import flags

from yt8m_xmodal import cli
from yt8m_xmodal.cli import FlagError
from yt8m_xmodal.tools import subset


# (name, default, help): each flag is the argument of the same name of
# `subset.extract_subset` or `subset.build_selection`.
_FLAGS = (
    ("input_data_pattern", None,
     "Comma-separated globs of YT8M TFRecord files."),
    ("output_dir", None, "Where shards and manifest.json go."),
    ("frame_features", True,
     "Frame-level input (SequenceExample), else video level. Unset: the "
     "level of the first input record."),
    ("id_feature", None, "Context key of the video id: id (2018 release) or "
     "video_id (2017). Default: the key of the first input record."),
    ("feature_names", None, "Video then audio feature name; default "
     "rgb,audio at frame level, mean_rgb,mean_audio at video level."),
    ("feature_sizes", "1024,128", "Sizes of the features in --feature_names."),
    ("label_names", None, "Comma list of vocabulary names to select (needs "
                          "--vocabulary_file). Default: the 17 music labels."),
    ("label_indices", None, "Comma list of class indices to select."),
    ("verticals", None, "Comma list of verticals, e.g. 'Arts & "
     "Entertainment', matched against Vertical1-3 (needs --vocabulary_file)."),
    ("vocabulary_file", None, "The official YouTube-8M vocabulary.csv."),
    ("min_frames", subset.DEFAULT_MIN_FRAMES,
     "Frame level: drop videos with fewer frames."),
    ("repeated_audio_min_videos", subset.DEFAULT_REPEATED_AUDIO_MIN_VIDEOS,
     "Video level: drop videos whose exact audio vector is shared by at "
     "least this many distinct ids."),
    ("split_fractions", "0.8,0.1,0.1",
     "Train,validate,test fractions of the id hash range."),
    ("num_shards", subset.DEFAULT_NUM_SHARDS, "Output shards per split."),
    ("skip_corrupt", False, "Skip unreadable input files (listed in the "
                            "manifest) instead of stopping."),
    ("overwrite", False, "Replace an existing subset in --output_dir."),
)


def define_flags(flag_values=flags.FLAGS):
    """Defines the tool's flags on `flag_values` (tests pass a fresh one)."""
    cli.define_flag_table(_FLAGS, flag_values)


def run_from_flags(flag_values=flags.FLAGS, progress=sys.stderr):
    """Runs `subset.extract_subset` with parsed flags; returns the manifest.

    Raises:
      FlagError: a required flag is missing.
      ConfigError, DataError: from the tool, naming the argument (the flag of
        the same name; `cli.run` shows it as the flag) or the file.
    """
    for name in ("input_data_pattern", "output_dir"):
        if not flag_values[name].value:
            raise FlagError(f"--{name} is required")
    selection = subset.build_selection(
        label_names=flag_values.label_names,
        label_indices=flag_values.label_indices,
        verticals=flag_values.verticals,
        vocabulary_file=flag_values.vocabulary_file)
    return subset.extract_subset(
        flag_values.input_data_pattern, flag_values.output_dir,
        # Unset, the level is the records' own.
        frame_features=(flag_values.frame_features
                        if flag_values["frame_features"].present else None),
        id_feature=flag_values.id_feature,
        feature_names=flag_values.feature_names,
        feature_sizes=flag_values.feature_sizes,
        selection=selection,
        min_frames=flag_values.min_frames,
        repeated_audio_min_videos=flag_values.repeated_audio_min_videos,
        split_fractions=flag_values.split_fractions,
        num_shards=flag_values.num_shards,
        skip_corrupt=flag_values.skip_corrupt,
        overwrite=flag_values.overwrite,
        progress=progress)


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
