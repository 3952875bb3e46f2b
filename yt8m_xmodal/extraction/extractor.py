"""A media file in, one YT8M frame-level record out.

`FeatureExtractor` loads the weights once; `extract(path)` returns one
serialized `tf.train.SequenceExample` in YT8M's layout: context `id` (the
file's stem), `mean_rgb` / `mean_audio` (means over frames of the
dequantized bytes, as in the release, whose means reach 2.0078125 = byte 255
dequantized; video-level models can read the record), and feature lists `rgb` (1,024 bytes a frame)
and `audio` (128 bytes a frame). A file without video gets no `rgb` and no
`mean_rgb`. A file with both keeps the seconds both cover. `write_tfrecord`
writes many files into one TFRecord, with `skip_errors` opt-in and counted.
"""

import dataclasses
import glob
import logging
import os

import tensorflow as tf

from yt8m_xmodal import features
from yt8m_xmodal import progress
from yt8m_xmodal import writers
from yt8m_xmodal.errors import ConfigError, DataError
from yt8m_xmodal.extraction import inception
from yt8m_xmodal.extraction import media
from yt8m_xmodal.extraction import postprocess
from yt8m_xmodal.extraction import vggish
from yt8m_xmodal.extraction import weights as weights_lib

log = logging.getLogger("yt8m_xmodal")

MEDIA_EXTENSIONS = (".wav", ".mp3", ".flac", ".m4a", ".mp4", ".mkv", ".webm")


def _field(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """The options of yt8m-xmodal-extract (its flags are these fields)."""
    input: str = _field(
        "", "A media file, a glob or a comma-separated list of them (wav, "
        "mp3, flac, m4a, mp4, mkv, webm; a glob keeps only those).")
    output_file: str = _field(
        "", "The TFRecord of YT8M frame-level SequenceExamples to write.")
    weights_dir: str = _field(
        "", "Directory holding the official weight files under their "
        "official names (default: the cache directory, where missing files "
        "are downloaded).")
    download: bool = _field(
        True, "Download missing weight files from their official URLs into "
        "the cache directory (--nodownload only looks).")
    skip_errors: bool = _field(
        False, "Skip files that cannot be read (not media, no audio, too "
        "short), counting them, instead of stopping at the first.")

    def __post_init__(self):
        for name in ("input", "output_file"):
            if not getattr(self, name):
                raise ConfigError(f"{{{name}}} is empty",
                                  **{name: getattr(self, name)})


def resolve_inputs(pattern):
    """The media files of a file, glob or comma list, in order, each once.

    Raises:
      DataError: naming the part of `pattern` that matches no file.
    """
    paths = []
    for part in (p.strip() for p in pattern.split(",")):
        if not part:
            continue
        if glob.has_magic(part):
            matched = sorted(p for p in glob.glob(part)
                             if p.lower().endswith(MEDIA_EXTENSIONS)
                             and os.path.isfile(p))
        else:
            matched = [part] if os.path.isfile(part) else []
        if not matched:
            raise DataError(f"{part}: no such media file")
        paths.extend(p for p in matched if p not in paths)
    return paths


class FeatureExtractor:
    """YT8M's features of media files, with the official networks.

    Args:
      weights_dir: directory of the official files (see `weights`); None:
        the cache directory.
      download: fetch missing files (False: a missing file is an error at
        once).

    Example:
    >>> extractor = FeatureExtractor("/data/yt8m_weights")
    >>> record = extractor.extract("my_song.mp3")   # serialized bytes
    """

    def __init__(self, weights_dir=None, download=True):
        paths = weights_lib.resolve(weights_dir or None, download=download)
        try:
            self.vggish = vggish.VGGish(
                paths[weights_lib.VGGISH_CHECKPOINT.name])
            self.inception = inception.InceptionV3Graph(
                paths[weights_lib.INCEPTION_GRAPH.name])
        except (ValueError, tf.errors.OpError) as e:
            raise DataError(str(e).strip().splitlines()[0]) from None
        self.audio_pca = weights_lib.load_audio_pca(
            paths[weights_lib.VGGISH_PCA.name])
        self.rgb_pca = weights_lib.load_rgb_pca(paths)

    def features(self, path):
        """The features of one file, before and after quantization.

        Returns:
          A dict: `id`; `audio` float64 [T, 128] and `audio_codes` uint8;
          `rgb` [T, 1024], `rgb_codes` and `times` (the chosen frames'
          seconds) when the file has video. Floats are before quantization,
          clipped to [-2, 2].

        Raises:
          DataError: naming the file, when it is not media, has no audio
            stream or is shorter than one audio frame.
        """
        samples = media.decode_audio(path)
        num_frames = min(vggish.num_patches(len(samples)), features.MAX_FRAMES)
        if num_frames == 0:
            raise DataError(
                f"{path}: {len(samples) / media.SAMPLE_RATE:.3f} s of audio, "
                f"shorter than one audio frame ({vggish.PATCH_SAMPLES} "
                f"samples, {vggish.PATCH_SAMPLES / media.SAMPLE_RATE} s)")
        result = {"id": os.path.splitext(os.path.basename(path))[0]}
        if media.has_video(path):
            frames, times = media.decode_frames(path)
            num_frames = min(num_frames, len(frames))
            raw = self.inception.embed(frames[:num_frames])
            whitened = self.rgb_pca(raw)
            result.update(rgb=postprocess.clip(whitened),
                          rgb_codes=postprocess.quantize_rgb(whitened),
                          times=times[:num_frames])
        needed = (num_frames - 1) * media.SAMPLE_RATE + vggish.PATCH_SAMPLES
        embeddings = self.vggish.embed(samples[:needed])
        projected = self.audio_pca(embeddings)
        result.update(audio=postprocess.clip(projected),
                      audio_codes=postprocess.quantize_audio(projected))
        return result

    def extract(self, path):
        """One file -> one serialized YT8M frame-level SequenceExample."""
        return to_sequence_example(self.features(path)).SerializeToString()


def to_sequence_example(extracted):
    """The SequenceExample of `FeatureExtractor.features`' dict."""
    example = writers.make_frame_example(
        extracted["id"], [], extracted.get("rgb_codes"),
        extracted["audio_codes"])
    for name, key in zip(features.VIDEO_FEATURE_NAMES,
                         ("rgb_codes", "audio_codes")):
        if key in extracted:
            mean = tf.reduce_mean(features.dequantize(extracted[key]), axis=0)
            example.context.feature[name].float_list.value.extend(
                mean.numpy().tolist())
    return example


def write_tfrecord(paths, output_file, extractor, skip_errors=False):
    """Extracts `paths` into the TFRecord `output_file`.

    The file appears only when complete. With `skip_errors`, a file that
    fails with a DataError is logged in one line and counted; otherwise the
    first such error is raised and nothing is written.

    Returns:
      (written, skipped) counts.
    """
    written, skipped = 0, 0
    partial = output_file + ".partial"
    try:
        with tf.io.TFRecordWriter(partial) as writer, progress.Progress(
                "extract", total=len(paths), unit="file") as bar:
            for path in paths:
                try:
                    record = extractor.extract(path)
                except DataError as e:
                    if not skip_errors:
                        raise
                    log.warning("skipped %s", e)
                    skipped += 1
                else:
                    writer.write(record)
                    written += 1
                bar.advance()
        os.replace(partial, output_file)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return written, skipped
