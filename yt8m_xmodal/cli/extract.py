r"""Writes YT8M frame-level records of your own songs and videos.

    yt8m-xmodal-extract --input='/music/*.mp3,/videos/clip.mp4' \
        --output_file=mine.tfrecord --weights_dir=/data/yt8m_weights

Each file becomes one SequenceExample in YT8M's layout (id = the file's
stem; rgb and audio bytes per second; mean_rgb and mean_audio), which
train.py, eval.py and inference.py read like the released shards. The
weights are the official files (VGGish, Inception-v3 of 2015 and both
PCAs); missing ones are downloaded into the cache directory. See
docs/extraction.md.
"""

import dataclasses

from absl import flags

from yt8m_xmodal import cli
from yt8m_xmodal.extraction import extractor

FLAGS = flags.FLAGS

cli.define_config_flags(extractor.ExtractConfig)


def config_from_flags():
    """The ExtractConfig of the command line."""
    return extractor.ExtractConfig(**{
        field.name: getattr(FLAGS, field.name)
        for field in dataclasses.fields(extractor.ExtractConfig)})


def main(argv):
    del argv
    config = config_from_flags()
    cli.check_output_path("output_file", config.output_file)
    paths = extractor.resolve_inputs(config.input)
    features = extractor.FeatureExtractor(config.weights_dir or None,
                                          download=config.download)
    written, skipped = extractor.write_tfrecord(
        paths, config.output_file, features, skip_errors=config.skip_errors)
    skipped_text = f"; {skipped} skipped (unreadable)" if skipped else ""
    print(f"{written} records written to {config.output_file}{skipped_text}")
    return 0


def run():
    """The command's entry point (module and console script)."""
    cli.run(main)


if __name__ == "__main__":
    run()
