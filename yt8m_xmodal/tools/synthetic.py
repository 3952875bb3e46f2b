r"""Built-in demo data: a music-like audio-video dataset in the YT8M format.

    python -m yt8m_xmodal.cli.synthetic --output_dir=/tmp/demo --num_videos=2000

writes train/validate/test shards (80/10/10) of frame-level SequenceExamples
(8-bit quantized exactly like the release), or video-level Examples with
`--noframe_features`, and `dataset.json`. Each video has a style latent and a
song structure of sections, seen by both modalities through different noisy
nonlinear views with private interludes, so reading chunks in time pays off.
`dataset.json` reports the Bayes-optimal oracle's retrieval on each split.
The generative model and the oracle: docs/design.md, "Demo data".
"""

import dataclasses
import json
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from yt8m_xmodal import config
from yt8m_xmodal import features
from yt8m_xmodal import metrics
from yt8m_xmodal import writers
from yt8m_xmodal.errors import ConfigError

# Bump when the generative model changes: the demo cache is keyed on it.
GENERATOR_VERSION = 2

SPLITS = ("train", "validate", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

DEFAULT_NUM_VIDEOS = 2000
DEFAULT_MIN_FRAMES = 60
DEFAULT_MAX_FRAMES = features.MAX_FRAMES
DEFAULT_NUM_CLASSES = 8
DEFAULT_NUM_SHARDS = 4

GENRE_NAMES = ("rock", "pop", "electronic", "hip_hop", "jazz", "classical",
               "folk", "metal", "country", "reggae", "blues", "latin")

# Latent sizes.
STYLE_DIM = 8
SECTION_DIM = 8
PRIVATE_DIM = 8
HIDDEN_UNITS = 96
# A phrase of 20 frames (20 s at YT8M's 1 frame per second).
SECTION_FRAMES = 20
# Both streams always have the same length, a side channel for retrieval;
# few distinct lengths keep it weak (see "oracle"). Half the videos run the
# full max_frames, as YT8M videos longer than 300 s are cut there.
FULL_LENGTH_FRACTION = 0.5
NUM_SHORTER_LENGTHS = 4
# Video lags audio by 0..MAX_VIDEO_LAG frames.
MAX_VIDEO_LAG = 2

# Noise of each modality's view of the shared latent (the oracle's limit).
STYLE_VIEW_NOISE = 1.4
SECTION_VIEW_NOISE = 1.0
INTERLUDE_PROB = 0.25
# Within-section frame-to-frame variation of the content, per modality.
FRAME_JITTER = 0.35
# Gain of the first layer (how nonlinear the map is) and feature-level noise.
MAP_GAIN = 1.5
SIGNAL_STD = 0.36
FEATURE_NOISE = {"video": 0.4, "audio": 0.32}
# A second genre label when the runner-up score is within this margin.
SECOND_LABEL_MARGIN = 0.3

RECALL_KS = (1, 5, 10, 20)
# Videos rendered per matrix product; part of the random stream, so fixed.
RENDER_BATCH = 32

_LATENT_DIM = STYLE_DIM + SECTION_DIM + 1 + PRIVATE_DIM


def split_sizes(num_videos):
    """Train / validate / test counts for `num_videos` (80/10/10)."""
    num_validate = int(round(num_videos * SPLIT_FRACTIONS[1]))
    num_test = int(round(num_videos * SPLIT_FRACTIONS[2]))
    return {"train": num_videos - num_validate - num_test,
            "validate": num_validate, "test": num_test}


def label_names(num_classes):
    return [GENRE_NAMES[k] if k < len(GENRE_NAMES) else f"genre_{k}"
            for k in range(num_classes)]


class _RandomMaps:
    """The fixed random world: one nonlinear map per modality, genre axes."""

    def __init__(self, rng, feature_sizes, num_classes):
        self.maps = {}
        for modality, size in zip(("video", "audio"), feature_sizes):
            w1 = rng.standard_normal((_LATENT_DIM, HIDDEN_UNITS))
            w1 *= MAP_GAIN / np.sqrt(_LATENT_DIM)
            b1 = rng.uniform(-0.5, 0.5, HIDDEN_UNITS)
            w2 = rng.standard_normal((HIDDEN_UNITS, size))
            # tanh units have variance ~0.5 at this gain.
            w2 *= SIGNAL_STD / np.sqrt(0.5 * HIDDEN_UNITS)
            b2 = rng.uniform(-0.3, 0.3, size)
            self.maps[modality] = tuple(
                a.astype(np.float32) for a in (w1, b1, w2, b2))
        self.genre_axes = rng.standard_normal((STYLE_DIM, num_classes))


def _sample_latents(rng, maps, num, min_frames, max_frames):
    """Latents of `num` videos, vectorized. Arrays indexed [video, ...]."""
    max_sections = -(-max_frames // SECTION_FRAMES)
    shorter = np.linspace(min_frames, max_frames, NUM_SHORTER_LENGTHS + 1)
    shorter = shorter[:-1].round().astype(np.int64)
    full = rng.random(num) < FULL_LENGTH_FRACTION
    num_frames = np.where(full, max_frames,
                          shorter[rng.integers(0, len(shorter), num)])
    lag = rng.integers(0, MAX_VIDEO_LAG + 1, num)
    style = rng.standard_normal((num, STYLE_DIM))
    sections = rng.standard_normal((num, max_sections, SECTION_DIM))
    latents = {"num_frames": num_frames, "lag": lag}
    for modality in ("audio", "video"):
        latents[modality] = {
            "style": style
            + STYLE_VIEW_NOISE * rng.standard_normal(style.shape),
            "sections": sections + SECTION_VIEW_NOISE
            * rng.standard_normal(sections.shape),
            "interlude": rng.random((num, max_sections)) < INTERLUDE_PROB,
            "private_style": rng.standard_normal((num, PRIVATE_DIM)),
            "private_sections": rng.standard_normal(sections.shape),
        }
    genre_scores = style @ maps.genre_axes
    order = np.argsort(-genre_scores, axis=1)
    top = np.take_along_axis(genre_scores, order[:, :2], axis=1)
    second = (top[:, 0] - top[:, 1]) < SECOND_LABEL_MARGIN
    latents["labels"] = [sorted(order[i, :2]) if second[i] else [order[i, 0]]
                         for i in range(num)]
    return latents


def _section_index(num_frames, lag):
    return np.maximum(np.arange(num_frames) - lag, 0) // SECTION_FRAMES


def _shown_sections(num_frames, lag, interlude):
    """[S] bool: sections whose content the stream shows (not interludes)."""
    shown = np.zeros(interlude.shape, bool)
    shown[np.unique(_section_index(num_frames, lag))] = True
    return shown & ~interlude


def _render(rng, maps, latents, videos, modality):
    """Frames of `videos` (indices) in one modality: a list of [T, D] float32.

    The videos are rendered in one matrix product, which keeps it efficient.
    """
    view = latents[modality]
    videos = np.asarray(videos)
    num_frames = latents["num_frames"][videos]
    lag = (latents["lag"][videos] if modality == "video"
           else np.zeros_like(num_frames))
    # One row per frame of the batch: its video and its section.
    video = np.repeat(videos, num_frames)
    starts = np.cumsum(num_frames) - num_frames
    frame = np.arange(len(video)) - np.repeat(starts, num_frames)
    section = (np.maximum(frame - np.repeat(lag, num_frames), 0)
               // SECTION_FRAMES)
    interlude = view["interlude"][video, section]
    content = np.where(interlude[:, None],
                       view["private_sections"][video, section],
                       view["sections"][video, section])
    latent = np.concatenate([
        view["style"][video],
        content,
        # The in-modality interlude marker.
        (2.0 * interlude - 1.0)[:, None],
        view["private_style"][video],
    ], axis=1).astype(np.float32)
    content = slice(STYLE_DIM, STYLE_DIM + SECTION_DIM)
    latent[:, content] += FRAME_JITTER * rng.standard_normal(
        (len(latent), SECTION_DIM), dtype=np.float32)
    w1, b1, w2, b2 = maps.maps[modality]
    # TensorFlow's matmul: numpy's OpenBLAS threads slow down 10-40x when the
    # cores are shared with other processes.
    hidden = np.tanh(tf.linalg.matmul(latent, w1).numpy() + b1)
    frames = tf.linalg.matmul(hidden, w2).numpy() + b2
    frames += FEATURE_NOISE[modality] * rng.standard_normal(
        frames.shape, dtype=np.float32)
    return np.split(frames, starts[1:])


def _gaussian_pair_scores(x, y, noise, x_mask=None, y_mask=None):
    """Log Bayes factors of all pairs of two noisy views of N(0, I) latents.

    x: [N, ..., d] views in one stream, y: [M, ..., d] in the other, with view
    noise `noise`; masks [N, ...] / [M, ...] say which views exist. Returns
    [N, M]: sum over views shown in both of
    log N2(x, y; corr rho) - log N(x) - log N(y), per dimension.
    """
    var = 1.0 + noise ** 2
    rho = 1.0 / var
    x = x / np.sqrt(var)
    y = y / np.sqrt(var)
    d = x.shape[-1]
    if x_mask is None:
        x_mask = np.ones(x.shape[:-1])
        y_mask = np.ones(y.shape[:-1])
    x_mask = x_mask.astype(np.float64).reshape(len(x), -1)
    y_mask = y_mask.astype(np.float64).reshape(len(y), -1)
    x = x.reshape(len(x), -1, d)
    y = y.reshape(len(y), -1, d)
    c = rho / (1.0 - rho ** 2)
    # -1/2 log(1 - rho^2) - rho c (x^2 + y^2) / 2 + c x.y, per dimension.
    x_sq = np.sum(x ** 2, -1) * x_mask
    y_sq = np.sum(y ** 2, -1) * y_mask
    both = x_mask @ y_mask.T
    cross = np.einsum("isd,jsd->ij", x * x_mask[..., None],
                      y * y_mask[..., None])
    return (-0.5 * d * np.log(1.0 - rho ** 2) * both
            - 0.5 * rho * c * (x_sq @ y_mask.T + x_mask @ y_sq.T)
            + c * cross)


def oracle_scores(audio, video):
    """Oracle log Bayes factors [N_audio, N_video] of every pair.

    `audio` and `video` are the latent views each stream carries:
    {"style": [N, STYLE_DIM], "sections": [N, S, SECTION_DIM],
    "shown": [N, S] bool}. The score is symmetric: swapping the arguments
    gives the transpose.
    """
    return (_gaussian_pair_scores(audio["style"], video["style"],
                                  STYLE_VIEW_NOISE)
            + _gaussian_pair_scores(audio["sections"], video["sections"],
                                    SECTION_VIEW_NOISE, audio["shown"],
                                    video["shown"]))


# Query rows scored at once, so a large gallery never needs [N, N] in memory.
_QUERY_BLOCK = 512


def _true_match_ranks(score_rows, queries, gallery, num):
    """`metrics.true_pair_ranks_of_scores` for score_rows(queries, gallery,
    rows), which scores queries[rows] against the whole gallery."""
    return metrics.true_pair_ranks_of_scores(
        lambda start, stop: score_rows(queries, gallery,
                                       np.arange(start, stop)),
        num, chunk_size=_QUERY_BLOCK)


def both_directions(score_rows, audio, video, num):
    """Retrieval in both directions from a symmetric pair score.

    score_rows(queries, gallery, rows) scores queries[rows] against the whole
    gallery; `audio` and `video` are passed through as queries and gallery.
    The figures are those eval.py reports (`metrics.rank_metrics`), at
    RECALL_KS.
    """
    return {
        "audio_to_video": metrics.rank_metrics(
            _true_match_ranks(score_rows, audio, video, num), RECALL_KS),
        "video_to_audio": metrics.rank_metrics(
            _true_match_ranks(score_rows, video, audio, num), RECALL_KS),
        "gallery_size": int(num)}


def _take(views, rows):
    return {key: value[rows] for key, value in views.items()}


def _oracle_rows(queries, gallery, rows):
    return oracle_scores(_take(queries, rows), gallery)


def _oracle_rows_same_length(queries, gallery, rows):
    same = (queries["num_frames"][rows][:, None]
            == gallery["num_frames"][None, :])
    return np.where(same, _oracle_rows(queries, gallery, rows), -np.inf)


def frame_count_only_metrics(num_frames):
    """Expected retrieval from the shared frame count alone.

    The candidates of equal length come first, in random order: with n of
    them, the true match's rank is uniform on 1..n, so Recall@K is min(K, n)/n
    and the reciprocal rank averages over 1..n; "median_rank" is the median of
    the expected ranks (n + 1) / 2. The same in both directions.
    """
    _, index, counts = np.unique(num_frames, return_inverse=True,
                                 return_counts=True)
    ties = counts[index]
    result = {f"recall@{k}": float(np.mean(np.minimum(k, ties) / ties))
              for k in RECALL_KS}
    result["median_rank"] = float(np.median((ties + 1) / 2.0))
    harmonic = np.cumsum(1.0 / np.arange(1, ties.max() + 1))
    result["mrr"] = float(np.mean(harmonic[ties - 1] / ties))
    return {"audio_to_video": result, "video_to_audio": dict(result),
            "gallery_size": int(len(num_frames))}


def _check_options(num_videos, num_shards, min_frames, max_frames,
                   feature_sizes, num_classes):
    if num_videos < 30:
        raise ConfigError("{num_videos} must be at least 30 so every split "
                          "gets videos", num_videos=num_videos)
    if num_shards < 1:
        raise ConfigError("{num_shards} must be >= 1", num_shards=num_shards)
    if not 1 <= min_frames <= max_frames:
        raise ConfigError("{min_frames} and {max_frames} need 1 <= "
                          "min_frames <= max_frames", min_frames=min_frames,
                          max_frames=max_frames)
    if len(feature_sizes) != 2 or min(feature_sizes) < 1:
        raise ConfigError("{feature_sizes} must be two positive sizes: "
                          "video, audio",
                          feature_sizes=",".join(map(str, feature_sizes)))
    if num_classes < 2:
        raise ConfigError("{num_classes} must be >= 2",
                          num_classes=num_classes)


def _quantize(frames):
    """`features.quantize` in float32 and in place, to save time and memory.

    Float32 can only flip the rounding of values within ~3e-5 code units of a
    midpoint between two codes.
    """
    np.clip(frames, features.QUANTIZE_MIN, features.QUANTIZE_MAX, out=frames)
    frames -= features.QUANTIZE_MIN
    frames *= 255.0 / (features.QUANTIZE_MAX - features.QUANTIZE_MIN)
    return np.rint(frames, out=frames).astype(np.uint8)


def _dequantized_mean(codes):
    return (codes.mean(axis=0, dtype=np.float64) * features.DEQUANTIZE_SCALAR
            + features.DEQUANTIZE_BIAS)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig(config.FeaturesConfig):
    """`yt8m-xmodal-synthetic`: the arguments of `generate_dataset`."""

    output_dir: str = config.option(
        "", "Where to write the shards and dataset.json.")
    num_videos: int = config.option(
        DEFAULT_NUM_VIDEOS, "Total videos, split 80/10/10 "
        "train/validate/test.")
    seed: int = config.option(0, "Seed of everything generated.")
    num_shards: int = config.option(
        DEFAULT_NUM_SHARDS, "Train shards; validate and test get a quarter.")
    frame_features: bool = config.option(
        True, "Frame-level SequenceExamples (rgb, audio); else video-level "
        "mean_rgb, mean_audio Examples.")
    min_frames: int = config.option(DEFAULT_MIN_FRAMES,
                                    "Shortest video, in frames.")
    max_frames: int = config.option(DEFAULT_MAX_FRAMES,
                                    "Longest video, in frames.")
    num_classes: int = config.option(DEFAULT_NUM_CLASSES,
                                     "Number of genre labels.")

    def __post_init__(self):
        if not self.output_dir:
            raise ConfigError("{output_dir} is required", output_dir="")


def generate_dataset(output_dir, num_videos=DEFAULT_NUM_VIDEOS, seed=0,
                     num_shards=DEFAULT_NUM_SHARDS, frame_features=True,
                     min_frames=DEFAULT_MIN_FRAMES,
                     max_frames=DEFAULT_MAX_FRAMES,
                     feature_sizes=features.FEATURE_SIZES,
                     num_classes=DEFAULT_NUM_CLASSES, feature_names=None,
                     log=None):
    """Writes the synthetic dataset and returns its dataset.json content.

    Args:
      output_dir: directory for `{train,validate,test}-*-of-*.tfrecord` and
        `dataset.json` (created if missing).
      num_videos: total videos, split 80/10/10.
      seed: everything (the random maps and every video) follows from it;
        the same arguments give byte-identical files.
      num_shards: shards of the train split; validate and test get
        ceil(num_shards / 4) each.
      frame_features: frame-level SequenceExamples, else video-level means.
      min_frames, max_frames: the range of video lengths (see
        FULL_LENGTH_FRACTION and NUM_SHORTER_LENGTHS).
      feature_sizes: (video, audio) feature sizes.
      num_classes: number of genre labels (label ids 0..num_classes-1).
      feature_names: (video, audio) names; the YT8M defaults for the level.
      log: optional callable(str) for progress.

    Returns:
      The dict written to dataset.json.

    Raises:
      ConfigError: naming the argument, for an impossible option.
    """
    feature_sizes = tuple(int(s) for s in feature_sizes)
    _check_options(num_videos, num_shards, min_frames, max_frames,
                   feature_sizes, num_classes)
    feature_names = tuple(feature_names
                          or features.default_feature_names(frame_features))
    log = log or (lambda message: None)
    start = time.time()
    os.makedirs(output_dir, exist_ok=True)
    seeds = np.random.SeedSequence(seed).spawn(1 + 2 * len(SPLITS))
    maps = _RandomMaps(np.random.default_rng(seeds[0]), feature_sizes,
                       num_classes)
    sizes = split_sizes(num_videos)
    shards = {"train": num_shards, "validate": -(-num_shards // 4),
              "test": -(-num_shards // 4)}
    info = {
        "generator": "yt8m_xmodal.tools.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "frame_features": bool(frame_features),
        "feature_names": list(feature_names),
        "feature_sizes": list(feature_sizes),
        "min_frames": int(min_frames),
        "max_frames": int(max_frames),
        "num_classes": int(num_classes),
        "label_names": label_names(num_classes),
        "section_frames": SECTION_FRAMES,
        "num_videos": sizes,
        "files": {},
        "num_frames": {},
        "oracle": {},
        "oracle_with_frame_count": {},
        "frame_count_only": {},
    }
    for index, split in enumerate(SPLITS):
        latent_rng = np.random.default_rng(seeds[1 + 2 * index])
        render_rng = np.random.default_rng(seeds[2 + 2 * index])
        latents = _sample_latents(latent_rng, maps, sizes[split], min_frames,
                                  max_frames)
        num = sizes[split]
        split_means = {"audio": np.zeros((num, feature_sizes[1])),
                       "video": np.zeros((num, feature_sizes[0]))}
        shown = {"audio": np.zeros(latents["audio"]["interlude"].shape, bool),
                 "video": np.zeros(latents["video"]["interlude"].shape, bool)}
        with writers.ShardedRecordWriter(output_dir, split,
                                         shards[split]) as writer:
            for first in range(0, num, RENDER_BATCH):
                batch = range(first, min(first + RENDER_BATCH, num))
                frames = {m: _render(render_rng, maps, latents, batch, m)
                          for m in ("video", "audio")}
                for b, i in enumerate(batch):
                    codes = {}
                    for modality in ("video", "audio"):
                        lag = latents["lag"][i] if modality == "video" else 0
                        shown[modality][i] = _shown_sections(
                            latents["num_frames"][i], lag,
                            latents[modality]["interlude"][i])
                        codes[modality] = _quantize(frames[modality][b])
                        split_means[modality][i] = _dequantized_mean(
                            codes[modality])
                    video_id = f"syn-{split}-{i:06d}"
                    labels = latents["labels"][i]
                    if frame_features:
                        record = writers.make_frame_example(
                            video_id, labels, codes["video"], codes["audio"],
                            feature_names)
                    else:
                        record = writers.make_video_example(
                            video_id, labels, split_means["video"][i],
                            split_means["audio"][i], feature_names)
                    writer.write(record)
        lengths = latents["num_frames"]
        views = {modality: {"style": latents[modality]["style"],
                            "sections": latents[modality]["sections"],
                            "shown": shown[modality], "num_frames": lengths}
                 for modality in ("audio", "video")}
        info["files"][split] = [os.path.basename(p) for p in writer.paths]
        info["num_frames"][split] = {
            "min": int(lengths.min()), "max": int(lengths.max()),
            "mean": float(lengths.mean()), "total": int(lengths.sum())}
        info["oracle"][split] = both_directions(
            _oracle_rows, views["audio"], views["video"], num)
        info["oracle_with_frame_count"][split] = both_directions(
            _oracle_rows_same_length, views["audio"], views["video"], num)
        info["frame_count_only"][split] = frame_count_only_metrics(lengths)
        log(f"{split}: {num} videos, {lengths.sum()} frames, "
            f"{time.time() - start:.1f} s")
    info["generation_seconds"] = round(time.time() - start, 2)
    with open(os.path.join(output_dir, "dataset.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    return info


# The demo set the README's main job and the examples use by default.
DEMO_NAME = f"demo-v{GENERATOR_VERSION}"
DEMO_OPTIONS = {"num_videos": DEFAULT_NUM_VIDEOS, "seed": 0,
                "num_shards": DEFAULT_NUM_SHARDS}
# How train.py trains on the demo set (TrainConfig fields it sets unless
# given as flags), so that README's first command is a demo of minutes: its
# 1,600 training videos make 12 batches of 128 an epoch, and 8 epochs reach
# most of what training to early stopping does at a third of the cost
# (BENCHMARKS.md, "Demo command"); it validates every 3 epochs and at the
# end, and keeps the best model.
DEMO_TRAINING = {"batch_size": 128, "num_epochs": 8,
                 "validate_every_steps": 36}
CACHE_ENV = "YT8M_XMODAL_CACHE"


def default_cache_dir():
    """`$YT8M_XMODAL_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/yt8m_xmodal`."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(root, "yt8m_xmodal")


def ensure_demo_data(cache_dir=None, log=None):
    """Generates the default demo set once; returns its directory.

    The set is written into a temporary directory beside the cache entry and
    renamed into place when complete, so an interrupted run never leaves a
    half-written set behind, and two processes racing both end up with one
    complete copy.

    Args:
      cache_dir: where cached sets live; `default_cache_dir()` if None.
      log: optional callable(str) for progress.

    Returns:
      `cache_dir/demo-v{GENERATOR_VERSION}`, holding the shards and
      dataset.json.
    """
    cache_dir = cache_dir or default_cache_dir()
    path = os.path.join(cache_dir, DEMO_NAME)
    if os.path.exists(os.path.join(path, "dataset.json")):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{DEMO_NAME}-", dir=cache_dir)
    try:
        if log:
            log(f"generating the demo set into {path} (once)")
        generate_dataset(staging, log=log, **DEMO_OPTIONS)
        # mkdtemp makes it private; the finished set is an ordinary folder.
        os.chmod(staging, 0o755)
        if (os.path.isdir(path)
                and not os.path.exists(os.path.join(path, "dataset.json"))):
            # A leftover from a crash of an older version of this function.
            shutil.rmtree(path, ignore_errors=True)
        os.rename(staging, path)
    except OSError:
        # Another process finished first: keep its copy.
        if not os.path.exists(os.path.join(path, "dataset.json")):
            raise
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return path


def summary(info):
    """A few human-readable lines about a dataset.json dict."""
    lines = [f"{info['num_videos']} videos, {info['min_frames']}-"
             f"{info['max_frames']} frames, feature sizes "
             f"{info['feature_sizes']}, {info['num_classes']} genres"]
    for name in ("oracle", "frame_count_only"):
        test = info[name]["test"]["audio_to_video"]
        lines.append(
            f"test audio->video {name}: R@1 {test['recall@1']:.3f} "
            f"R@10 {test['recall@10']:.3f} median rank "
            f"{test['median_rank']:g}")
    return "\n".join(lines)
