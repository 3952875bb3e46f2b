"""Decodes a media file into YT8M's inputs: 1 fps RGB frames and 16 kHz mono.

Frames are chosen by presentation time, not by counting, so variable frame
rates work: the first frame is second 0, then for each whole second k the
first frame whose time is at or after k (a frame that is the first at or after
several seconds, across a gap, stands for each of them), at most 300 frames.
Audio is averaged over its channels and resampled to 16 kHz with soxr (not
touched when it already is 16 kHz mono). PyAV's wheels bundle FFmpeg.
"""

import fractions

import numpy as np

from yt8m_xmodal import features
from yt8m_xmodal.errors import DataError

# VGGish's input rate (vggish_params.SAMPLE_RATE).
SAMPLE_RATE = 16000


def _av():
    try:
        import av  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise DataError('decoding media needs PyAV: pip install '
                        '"yt8m_xmodal[media]"') from None
    return av


def _open(path):
    av = _av()
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a media file FFmpeg can read "
                        f"({_reason(e)})") from None


def _reason(error):
    return str(getattr(error, "strerror", None) or error).strip() or repr(error)


def has_video(path):
    """Whether the file holds a video stream (cover art does not count)."""
    with _open(path) as container:
        return any(not _is_cover_art(s) for s in container.streams.video)


def _is_cover_art(stream):
    # An mp3's or m4a's embedded picture is a one-frame "video" stream.
    return bool(stream.disposition & _av().stream.Disposition.attached_pic)


def decode_frames(path, max_frames=features.MAX_FRAMES):
    """The file's frames at 1 per second.

    Returns:
      (frames, times): uint8 [T, H, W, 3] RGB and the float seconds (from the
      stream's first frame) of the frame chosen for each second, T <=
      max_frames. T is 0 when the file has no video stream.

    Raises:
      DataError: naming the file, when it cannot be decoded.
    """
    av = _av()
    chosen, times = [], []
    with _open(path) as container:
        streams = [s for s in container.streams.video if not _is_cover_art(s)]
        if not streams:
            return np.zeros([0, 0, 0, 3], np.uint8), np.zeros([0])
        stream = streams[0]
        stream.thread_type = "AUTO"
        start = None
        second = 0  # the next whole second to fill
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                # Exact rational time: 29.97 fps frames near a whole second
                # fall on the right side of it.
                pts = fractions.Fraction(frame.pts) * frame.time_base
                if start is None:
                    start = pts
                t = pts - start
                if t < second:
                    continue
                rgb = frame.to_ndarray(format="rgb24")
                while second <= t and len(chosen) < max_frames:
                    chosen.append(rgb)
                    times.append(float(t))
                    second += 1
                if len(chosen) >= max_frames:
                    break
        except av.FFmpegError as e:
            raise DataError(f"{path}: video stream cannot be decoded "
                            f"({_reason(e)})") from None
    if not chosen:
        raise DataError(f"{path}: its video stream holds no frame")
    return np.stack(chosen), np.asarray(times)


def decode_audio(path, sample_rate=SAMPLE_RATE):
    """The file's first audio stream as float32 mono at `sample_rate`.

    Integer samples map to [-1, 1) as VGGish does (int16 / 32768); channels
    are averaged; other rates are resampled with soxr.

    Raises:
      DataError: naming the file, when it has no audio stream or cannot be
        decoded.
    """
    av = _av()
    with _open(path) as container:
        if not container.streams.audio:
            raise DataError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        # Planar float, same layout and rate: a format change only (FFmpeg
        # converts s16 as x / 32768, exactly in float32).
        resampler = av.AudioResampler(format="fltp")
        chunks, rate = [], None
        try:
            for frame in container.decode(stream):
                rate = frame.sample_rate
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().mean(axis=0))
        except av.FFmpegError as e:
            raise DataError(f"{path}: audio stream cannot be decoded "
                            f"({_reason(e)})") from None
    if not chunks:
        raise DataError(f"{path}: its audio stream holds no samples")
    samples = np.concatenate(chunks).astype(np.float32)
    if rate != sample_rate:
        samples = resample(samples, rate, sample_rate)
    return samples


def resample(samples, rate, target_rate):
    """float32 mono `samples` from `rate` to `target_rate` (soxr, HQ)."""
    try:
        import soxr  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise DataError(f'audio at {rate} Hz needs resampling to '
                        f'{target_rate} Hz, which needs soxr: pip install '
                        '"yt8m_xmodal[media]"') from None
    return soxr.resample(samples, rate, target_rate).astype(np.float32)
