"""The YouTube-8M feature format: names, sizes and the 8-bit quantization.

Source: the YouTube-8M starter code (readers.py, utils.py) and the feature
extractor (feature_extractor/extract_tfrecords_main.py), 2018 release.
"""

import numpy as np
import tensorflow as tf

from yt8m_xmodal.errors import ConfigError

# Frame-level records: one frame per second, at most 300 frames per video.
MAX_FRAMES = 300
# The 2018 vocabulary has 3,862 classes.
NUM_CLASSES = 3862

# Frame level: tf.train.SequenceExample feature lists of raw uint8 bytes.
FRAME_FEATURE_NAMES = ("rgb", "audio")
# Video level: tf.train.Example float lists, the mean over frames.
VIDEO_FEATURE_NAMES = ("mean_rgb", "mean_audio")
FEATURE_SIZES = (1024, 128)

# Quantization range of the feature extractor: values are clipped to
# [-2, 2] and mapped onto 0..255.
QUANTIZE_MIN = -2.0
QUANTIZE_MAX = 2.0
# Dequantization as in the starter code's utils.Dequantize:
#   x * (max - min) / 255 + (max - min) / 512 + min
# i.e. x * 4/255 + (4/512 - 2): byte 0 -> -1.9921875, byte 255 -> 2.0078125.
DEQUANTIZE_SCALAR = (QUANTIZE_MAX - QUANTIZE_MIN) / 255.0
DEQUANTIZE_BIAS = (QUANTIZE_MAX - QUANTIZE_MIN) / 512.0 + QUANTIZE_MIN


def dequantize(feat_vector):
    """Maps uint8 codes (any numeric tensor) to float32 features, as YT8M does."""
    feat_vector = tf.cast(feat_vector, tf.float32)
    return feat_vector * DEQUANTIZE_SCALAR + DEQUANTIZE_BIAS


def quantize(features):
    """Maps float features to uint8 codes like the YT8M feature extractor.

    Clips to [-2, 2], computes (x + 2) * 255 / 4 and rounds half to even.
    """
    features = np.clip(np.asarray(features, dtype=np.float64),
                       QUANTIZE_MIN, QUANTIZE_MAX)
    codes = np.rint((features - QUANTIZE_MIN) * 255.0
                    / (QUANTIZE_MAX - QUANTIZE_MIN))
    return codes.astype(np.uint8)


def default_feature_names(frame_features):
    """The YT8M default `--feature_names` for frame or video level."""
    return FRAME_FEATURE_NAMES if frame_features else VIDEO_FEATURE_NAMES


def parse_feature_lists(feature_names, feature_sizes):
    """Parses YT8M's feature names and sizes: sequences or comma lists.

    The first name is the video view, the second the audio view.

    Returns:
      A tuple ((video_name, audio_name), (video_size, audio_size)).

    Raises:
      ConfigError: naming `feature_names` / `feature_sizes`, when the lists
        are malformed or disagree.
    """
    if isinstance(feature_names, str):
        feature_names = [n.strip() for n in feature_names.split(",") if n.strip()]
    if isinstance(feature_sizes, str):
        try:
            feature_sizes = [int(s) for s in feature_sizes.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(
                "{feature_sizes} must be comma-separated integers, e.g. "
                "1024,128", feature_sizes=feature_sizes) from None
    feature_names = [str(n) for n in feature_names]
    feature_sizes = [int(s) for s in feature_sizes]
    if len(feature_names) != 2:
        raise ConfigError(
            "{feature_names} must name exactly two features: the video view "
            "first, then the audio view", feature_names=",".join(feature_names))
    if len(feature_sizes) != len(feature_names):
        raise ConfigError(
            f"{{feature_names}} has {len(feature_names)} names but "
            f"{{feature_sizes}} has {len(feature_sizes)} sizes; they must "
            "match one to one", feature_names=",".join(feature_names),
            feature_sizes=",".join(map(str, feature_sizes)))
    if any(s <= 0 for s in feature_sizes):
        raise ConfigError("{feature_sizes} must be positive",
                          feature_sizes=",".join(map(str, feature_sizes)))
    return tuple(feature_names), tuple(feature_sizes)


def context_features():
    """Parse spec of the context shared by both levels: `id` and `labels`."""
    return {
        "id": tf.io.FixedLenFeature([], tf.string),
        "labels": tf.io.VarLenFeature(tf.int64),
    }


def frame_sequence_features(feature_names=FRAME_FEATURE_NAMES):
    """Parse spec of frame-level feature lists: one bytes value per frame."""
    return {name: tf.io.FixedLenSequenceFeature([], dtype=tf.string)
            for name in feature_names}


def video_level_features(feature_names=VIDEO_FEATURE_NAMES,
                         feature_sizes=FEATURE_SIZES):
    """Parse spec of video-level records: `id`, `labels` and float vectors."""
    spec = context_features()
    for name, size in zip(feature_names, feature_sizes):
        spec[name] = tf.io.FixedLenFeature([size], tf.float32)
    return spec
