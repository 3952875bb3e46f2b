"""Extraction speed: seconds of media per second of wall time, audio and video.

Measured side by side in one run, on media generated here with PyAV:
- a song: a 44.1 kHz stereo wav (decoded, averaged, resampled to 16 kHz);
- a video: an mp4 of 25 fps 320 x 240 mpeg4 with 44.1 kHz AAC audio.
For each, the baseline is decoding alone (`media.decode_audio`, plus
`media.decode_frames` for the video), then the whole `FeatureExtractor.
extract`. The weights are stand-ins (yt8m_xmodal.tools.standin_media):
VGGish has the real network's sizes, so its cost is the real one; the
stand-in Inception graph is NOT Inception-v3 (a pool and one layer) and is
timed as what it is. As a proxy for the real graph's cost, Keras'
InceptionV3 (random weights, 299 x 299, same architecture family, not the
2015 graph) is timed per frame, and the video figure it implies is printed
as an estimate.

    python bench/bench_extract.py [--seconds=60] [--repeats=3]
    python bench/bench_extract.py --quick     # 5 s of media, smoke test

Writes bench/results/extract.md and extract.json (see bench/fragments.py).
"""

import dataclasses
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from yt8m_xmodal.config import option  # noqa: E402
from yt8m_xmodal.extraction import extractor  # noqa: E402
from yt8m_xmodal.extraction import media  # noqa: E402
from yt8m_xmodal.tools import standin_media  # noqa: E402

try:
    from bench import fragments  # noqa: E402
except ImportError:  # run as `python bench/bench_extract.py`
    import fragments  # noqa: E402



@dataclasses.dataclass(frozen=True)
class ExtractBenchConfig:
    """bench_extract.py's flags."""

    seconds: int = option(60, "Length of the generated song and video.")
    repeats: int = option(3, "Timed runs of each; the median is shown.")
    inception_proxy: bool = option(
        True, "Also time Keras' InceptionV3 per frame (a proxy for the real "
        "2015 graph's cost).")
    output_dir: str = option(fragments.DEFAULT_OUTPUT_DIR,
                             "Writes extract.md and extract.json here.")
    quick: bool = option(False, "5 s of media and one run, for smoke tests; "
                         "the outputs are marked as quick.")


def median_seconds(fn, repeats):
    fn()  # warm-up: traces, caches, first-touch of files
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def proxy_inception_seconds_per_frame(repeats):
    import keras  # pylint: disable=import-outside-toplevel
    model = keras.applications.InceptionV3(weights=None, include_top=False,
                                           pooling="avg",
                                           input_shape=(299, 299, 3))
    frame = np.random.default_rng(0).uniform(-1, 1, [1, 299, 299, 3]).astype(
        np.float32)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    call = tf.function(lambda x: model(x, training=False))
    return median_seconds(lambda: call(frame).numpy(), repeats * 3)


def main(argv=None):
    flags = fragments.parse_flags(ExtractBenchConfig, __doc__, argv)
    seconds = 5 if flags.quick else flags.seconds
    repeats = 1 if flags.quick else flags.repeats
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        weights_dir = os.path.join(tmp, "weights")
        standin_media.write_standin_weights(weights_dir)
        song = os.path.join(tmp, "song.wav")
        video = os.path.join(tmp, "video.mp4")
        standin_media.write_wav(song, seconds, rate=44100, channels=2)
        standin_media.write_clip(video, [i / 25 for i in range(25 * seconds)],
                                 size=(320, 240), audio_seconds=seconds,
                                 audio_rate=44100)
        features = extractor.FeatureExtractor(weights_dir, download=False)
        rows = []
        for label, path, decode in (
                ("song (44.1 kHz stereo wav)", song,
                 lambda p: media.decode_audio(p)),
                ("video (25 fps 320x240 mp4 + AAC)", video,
                 lambda p: (media.decode_frames(p), media.decode_audio(p)))):
            decode_s = median_seconds(lambda: decode(path), repeats)
            extract_s = median_seconds(lambda: features.extract(path),
                                       repeats)
            rows.append((label, decode_s, extract_s))
        proxy = (proxy_inception_seconds_per_frame(repeats)
                 if flags.inception_proxy else None)
        # The stand-in graph's own cost per frame, to swap for the proxy's.
        frames, _ = media.decode_frames(video)
        standin = median_seconds(lambda: features.inception.embed(frames),
                                 repeats) / len(frames)
    lines = [
        f"{seconds} s of generated media, median of {repeats} runs after a "
        f"warm-up; {platform.machine()}, {os.cpu_count()} cores shared with "
        "other jobs (compare within a row: decode alone is the same-run "
        "baseline).",
        "",
        "| input | decode alone (media s/s) | whole extraction (media s/s) "
        "| extraction / decode time |",
        "|---|---|---|---|"]
    figures = {"seconds": seconds, "repeats": repeats, "rows": []}
    for label, decode_s, extract_s in rows:
        lines.append(f"| {label} | {seconds / decode_s:.1f} | "
                     f"{seconds / extract_s:.1f} | {extract_s / decode_s:.1f}x |")
        figures["rows"].append({"input": label, "decode_s": decode_s,
                                "extract_s": extract_s})
    lines += ["", f"Stand-in Inception graph (a pool and one layer, NOT "
              f"Inception-v3): {standin * 1000:.1f} ms/frame."]
    figures["standin_inception_s_per_frame"] = standin
    if proxy is not None:
        _, _, video_s = rows[1]
        estimate = video_s - standin * seconds + proxy * seconds
        lines.append(
            f"Keras InceptionV3 as a proxy for the real graph (random "
            f"weights, 299x299, batch 1): {proxy * 1000:.0f} ms/frame; video "
            f"extraction with it instead of the stand-in, estimated: "
            f"{seconds / estimate:.2f} media s/s.")
        figures.update(proxy_inception_s_per_frame=proxy,
                       estimated_video_media_s_per_s=seconds / estimate)
    text = "\n".join(lines)
    print(text)
    fragments.write(flags.output_dir, "extract", text, figures, flags.quick)

if __name__ == "__main__":
    main()
