"""yt8m_xmodal.extraction: each stage against an independent float64 numpy
reference, on media generated with PyAV and stand-in weights in the official
formats (and the genuine VGGish PCA file from ../shared/extract/).

What these tests cannot show: agreement with the released YT8M features.
The official VGGish checkpoint, Inception graph and YT8M PCA cannot be
downloaded here, so the networks run with random stand-in weights; the tests
check that the official files' formats load by name and that the math around
them is the official one (see docs/extraction.md).
"""

import functools
import os
import pathlib
import subprocess
import sys
import time
import urllib.error

import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("av")
pytest.importorskip("soxr")

from conftest import REPO_ROOT  # noqa: E402
from yt8m_xmodal import features  # noqa: E402
from yt8m_xmodal.errors import DataError  # noqa: E402
from yt8m_xmodal.extraction import extractor  # noqa: E402
from yt8m_xmodal.extraction import inception  # noqa: E402
from yt8m_xmodal.extraction import media  # noqa: E402
from yt8m_xmodal.extraction import postprocess  # noqa: E402
from yt8m_xmodal.extraction import vggish  # noqa: E402
from yt8m_xmodal.extraction import weights  # noqa: E402
from yt8m_xmodal.tools import standin_media  # noqa: E402

# The genuine VGGish PCA parameters live beside the checkout, never in it.
SHARED_EXTRACT = pathlib.Path(os.environ.get(
    "YT8M_SHARED_EXTRACT_DIR", REPO_ROOT.parent / "shared" / "extract"))
GENUINE_PCA = SHARED_EXTRACT / "vggish_pca_params.npz"

# A variable frame rate: gaps, a frame exactly on a whole second, a frame
# that is the first at or after two seconds (3 and 4).
FRAME_TIMES = (0.0, 0.3, 0.97, 1.0, 1.4, 2.2, 2.5, 4.6, 5.1, 5.9)
CLIP_AUDIO_SECONDS = 6.5


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights")
    standin_media.write_standin_weights(
        str(path), seed=0,
        vggish_pca_path=str(GENUINE_PCA) if GENUINE_PCA.exists() else None)
    return path


@pytest.fixture(scope="module")
def genuine_pca():
    if not GENUINE_PCA.exists():
        pytest.skip(f"genuine vggish_pca_params.npz not found at {GENUINE_PCA}")
    return GENUINE_PCA


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """clip.mp4 (VFR video + AAC), song.wav (16 kHz mono s16, the exact
    path), stereo.wav (44.1 kHz stereo)."""
    root = tmp_path_factory.mktemp("media")
    standin_media.write_clip(str(root / "clip.mp4"), FRAME_TIMES,
                             audio_seconds=CLIP_AUDIO_SECONDS)
    song = standin_media.write_wav(str(root / "song.wav"), 4.3)
    standin_media.write_wav(str(root / "stereo.wav"), 3.2, rate=44100,
                            channels=2)
    return root, song


@pytest.fixture(scope="module")
def feature_extractor(weights_dir):
    return extractor.FeatureExtractor(str(weights_dir), download=False)


# -- independent float64 references ----------------------------------------------


def ref_mel_matrix():
    """64 HTK triangles over 125-7500 Hz, one STFT bin at a time."""
    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)
    edges = np.linspace(mel(125.0), mel(7500.0), 66)
    matrix = np.zeros([257, 64])
    for b in range(1, 257):  # the DC row stays zero
        m = mel(b * 8000.0 / 256)
        for band in range(64):
            lo, mid, hi = edges[band], edges[band + 1], edges[band + 2]
            if lo < m <= mid:
                matrix[b, band] = (m - lo) / (mid - lo)
            elif mid < m < hi:
                matrix[b, band] = (hi - m) / (hi - mid)
    return matrix


def ref_log_mel_patch(window_samples):
    """The 96 x 64 log-mel patch of exactly 15,600 samples."""
    assert len(window_samples) == 15600
    n = np.arange(400)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / 400)  # periodic
    rows = []
    for j in range(96):
        frame = np.zeros(512)
        frame[:400] = window_samples[160 * j:160 * j + 400] * hann
        rows.append(np.abs(np.fft.rfft(frame)))
    return np.log(np.array(rows) @ ref_mel_matrix() + 0.01)


def ref_log_mel(samples):
    """Patch k from samples [16000 k, 16000 k + 15600), sliced directly."""
    count = 0
    while 16000 * count + 15600 <= len(samples):
        count += 1
    return np.stack([ref_log_mel_patch(samples[16000 * k:16000 * k + 15600])
                     for k in range(count)])


def ref_conv_same_relu(x, w, b):
    """3x3 SAME convolution + ReLU of [B, H, W, C] by shifted sums."""
    _, h, wd, _ = x.shape
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    out = np.zeros(x.shape[:3] + (w.shape[3],)) + b
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy:dy + h, dx:dx + wd, :] @ w[dy, dx]
    return np.maximum(out, 0.0)


def ref_pool(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


@functools.lru_cache(maxsize=1)
def ref_checkpoint(ckpt):
    """{name: float64 array} of a checkpoint, read by variable name."""
    reader = tf.train.load_checkpoint(ckpt)
    return {name: reader.get_tensor(name).astype(np.float64)
            for name in reader.get_variable_to_shape_map()}


def ref_vggish(patches, ckpt):
    """VGGish in numpy from the checkpoint's variables: [B, 96, 64] ->
    [B, 128]."""
    get = ref_checkpoint(ckpt).__getitem__
    x = np.asarray(patches, np.float64)[..., None]
    for scope, pool in (("conv1", True), ("conv2", True),
                        ("conv3/conv3_1", False), ("conv3/conv3_2", True),
                        ("conv4/conv4_1", False), ("conv4/conv4_2", True)):
        x = ref_conv_same_relu(x, get(f"vggish/{scope}/weights"),
                               get(f"vggish/{scope}/biases"))
        if pool:
            x = ref_pool(x)
    x = x.reshape(len(x), -1)  # (h, w, c) order
    for scope in ("fc1/fc1_1", "fc1/fc1_2"):
        x = np.maximum(x @ get(f"vggish/{scope}/weights")
                       + get(f"vggish/{scope}/biases"), 0.0)
    return x @ get("vggish/fc2/weights") + get("vggish/fc2/biases")  # no ReLU


def ref_resize_bilinear_legacy(image, size=299):
    """TF1 ResizeBilinear, align_corners=False, no half-pixel centres."""
    h, w, _ = image.shape
    image = image.astype(np.float64)

    def axis(n_in):
        src = np.arange(size) * (n_in / size)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo
    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    top = (image[y0][:, x0] * (1 - fx)[None, :, None]
           + image[y0][:, x1] * fx[None, :, None])
    bottom = (image[y1][:, x0] * (1 - fx)[None, :, None]
              + image[y1][:, x1] * fx[None, :, None])
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


def ref_standin_inception(image, seed=0):
    w, b = standin_media.standin_graph_weights(seed)
    x = (ref_resize_bilinear_legacy(image) - 128.0) / 128.0
    p = standin_media.STANDIN_POOL
    n = 299 // p
    x = x[:n * p, :n * p].reshape(n, p, n, p, 3).mean(axis=(1, 3))
    return np.maximum(x.reshape(-1) @ w.astype(np.float64) + b, 0.0)


def ref_quantize_round(y):
    return np.array([round((min(max(v, -2.0), 2.0) + 2.0) * 255.0 / 4.0)
                     for v in np.ravel(y)]).reshape(np.shape(y))


def ref_quantize_truncate(v):
    return np.array([int((min(max(x, -2.0), 2.0) + 2.0) * 255.0 / 4.0)
                     for x in np.ravel(v)]).reshape(np.shape(v))


def ref_audio_pca(embeddings, npz_path):
    with np.load(npz_path) as npz:
        m, p = npz["pca_means"], npz["pca_eigen_vectors"]
    return np.stack([p @ (e - m) for e in embeddings])


def parse(record):
    example = tf.train.SequenceExample.FromString(record)
    lists = {name: [np.frombuffer(f.bytes_list.value[0], np.uint8)
                    for f in fl.feature]
             for name, fl in example.feature_lists.feature_list.items()}
    return example.context.feature, lists


# -- weights in the official formats ---------------------------------------------


def test_standin_checkpoint_is_v1_with_the_official_names(weights_dir):
    ckpt = weights_dir / "vggish_model.ckpt"
    # V1 is one file at the path itself; V2 would write .index and .data.
    assert ckpt.is_file() and not (weights_dir /
                                   "vggish_model.ckpt.index").exists()
    shapes = tf.train.load_checkpoint(str(ckpt)).get_variable_to_shape_map()
    assert {k: tuple(v) for k, v in shapes.items()} == \
        vggish.checkpoint_shapes()
    assert "vggish/conv3/conv3_1/weights" in shapes
    assert shapes["vggish/fc1/fc1_1/weights"] == [12288, 4096]


def test_wrong_format_weight_files_are_refused(tmp_path, weights_dir):
    bad_npz = tmp_path / "vggish_pca_params.npz"
    np.savez(bad_npz, pca_means=np.zeros(128))
    with pytest.raises(DataError, match="pca_eigen_vectors"):
        weights.load_audio_pca(str(bad_npz))
    bad_pb = tmp_path / "classify_image_graph_def.pb"
    bad_pb.write_bytes(b"\x08\x01not a graph at all")
    with pytest.raises(ValueError, match="classify_image_graph_def.pb"):
        inception.read_graph_def(str(bad_pb))
    paths = {w.name: str(weights_dir / w.name) for w in weights.VIDEO_FILES}
    np.save(tmp_path / "mean.npy", np.zeros([1024, 1], np.float32))
    paths["mean.npy"] = str(tmp_path / "mean.npy")
    with pytest.raises(DataError, match=r"mean.npy.*\[2048, 1\]"):
        weights.load_rgb_pca(paths)


def test_a_hash_other_than_the_official_one_is_logged_not_refused(
        weights_dir, genuine_pca, caplog):
    assert weights.check_hash(weights.VGGISH_PCA, str(genuine_pca))
    with caplog.at_level("WARNING", logger="yt8m_xmodal"):
        assert not weights.check_hash(weights.VGGISH_CHECKPOINT,
                                      str(weights_dir / "vggish_model.ckpt"))
    assert "not the official vggish_model.ckpt" in caplog.text


def test_offline_missing_files_one_line_each_after_one_try(
        tmp_path, monkeypatch):
    monkeypatch.setenv("YT8M_XMODAL_CACHE", str(tmp_path / "cache"))
    calls = []

    def offline(url, timeout):
        calls.append((url, timeout))
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(weights.urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as error:
        weights.resolve(str(tmp_path / "mine"))
    lines = str(error.value).splitlines()
    assert len(lines) == len(weights.ALL_FILES)
    for wanted, line in zip(weights.ALL_FILES, lines):
        assert wanted.name in line and wanted.url in line
        assert str(tmp_path / "mine") in line
    # Offline is known after the first failed connection, which has a
    # timeout of seconds.
    assert len(calls) == 1 and calls[0][1] == weights.DOWNLOAD_TIMEOUT <= 30


# -- decoding ---------------------------------------------------------------------


def test_frames_one_per_second_chosen_by_pts(clips):
    root, _ = clips
    frames, times = media.decode_frames(str(root / "clip.mp4"))
    expected = []
    second = 0
    while second <= FRAME_TIMES[-1]:
        expected.append(next(i for i, t in enumerate(FRAME_TIMES)
                             if t >= second))
        second += 1
    assert expected == [0, 3, 5, 7, 7, 8]  # the reference itself, spelled out
    assert len(frames) == len(expected)
    np.testing.assert_allclose(times, [FRAME_TIMES[i] for i in expected],
                               atol=1e-3)
    # Each frame is the chosen one: its grey level (off the red bar).
    grey = frames[:, :, -2:, 1].mean(axis=(1, 2))
    np.testing.assert_allclose(
        grey, [standin_media.frame_level(i) for i in expected], atol=3)
    assert frames.dtype == np.uint8 and frames.shape[-1] == 3
    assert len(media.decode_frames(str(root / "clip.mp4"), max_frames=2)[0]) \
        == 2


def test_audio_exact_on_16k_mono_and_resampled_otherwise(clips):
    root, song = clips
    samples = media.decode_audio(str(root / "song.wav"))
    np.testing.assert_array_equal(samples, song[:, 0] / 32768.0)
    stereo = media.decode_audio(str(root / "stereo.wav"))
    from scipy import signal
    from scipy.io import wavfile
    rate, raw = wavfile.read(root / "stereo.wav")
    assert rate == 44100 and raw.shape[1] == 2
    reference = signal.resample_poly(raw.astype(np.float64).mean(axis=1)
                                     / 32768.0, 160, 441)
    assert abs(len(stereo) - len(reference)) <= 1
    n = min(len(stereo), len(reference))
    middle = slice(800, n - 800)
    error = stereo[:n][middle] - reference[:n][middle]
    assert np.sqrt(np.mean(error ** 2)) < 1e-2 * np.sqrt(
        np.mean(reference[middle] ** 2))


# -- the stages against their references --------------------------------------------


def test_log_mel_patches_and_their_one_second_alignment(clips):
    _, song = clips
    samples = song[:, 0] / 32768.0
    got = vggish.log_mel_patches(samples.astype(np.float32)).numpy()
    want = ref_log_mel(samples)
    assert got.shape == want.shape == (4, 96, 64)
    np.testing.assert_allclose(got, want, atol=2e-3)
    for n, count in ((15599, 0), (15600, 1), (31599, 1), (31600, 2)):
        assert vggish.num_patches(n) == count
    assert vggish.log_mel_patches(np.zeros(31600, np.float32)).shape[0] == 2


def test_vggish_network_with_loaded_weights(weights_dir, clips):
    _, song = clips
    ckpt = str(weights_dir / "vggish_model.ckpt")
    model = vggish.VGGish(ckpt)
    patches = ref_log_mel(song[:32000, 0] / 32768.0)
    got = model.network(patches.astype(np.float32), training=False).numpy()
    want = ref_vggish(patches, ckpt)
    assert (want < 0).any()  # fc2 has no ReLU
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_inception_graph_imported_and_pruned(weights_dir):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, [2, 37, 53, 3], dtype=np.uint8)
    graph = inception.InceptionV3Graph(
        str(weights_dir / "classify_image_graph_def.pb"))
    got = graph.embed(images)
    want = np.stack([ref_standin_inception(im) for im in images])
    assert got.shape == (2, 2048)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_pca_and_quantization(weights_dir, genuine_pca):
    rng = np.random.default_rng(5)
    embeddings = rng.normal(0.0, 0.3, [6, 128])
    audio = weights.load_audio_pca(str(genuine_pca))
    np.testing.assert_allclose(audio(embeddings),
                               ref_audio_pca(embeddings, genuine_pca),
                               rtol=1e-12, atol=1e-12)
    paths = {w.name: str(weights_dir / w.name) for w in weights.ALL_FILES}
    rgb = weights.load_rgb_pca(paths)
    x = rng.normal(0.5, 0.2, [3, 2048])
    mean = np.load(paths["mean.npy"])[:, 0].astype(np.float64)
    vals = np.load(paths["eigenvals.npy"])[:1024, 0].astype(np.float64)
    vecs = np.load(paths["eigenvecs.npy"]).astype(np.float64)
    want = np.stack([[np.dot(row - mean, vecs[j]) / np.sqrt(vals[j] + 1e-4)
                      for j in range(1024)] for row in x])
    np.testing.assert_allclose(rgb(x), want, rtol=1e-9, atol=1e-9)
    # Quantization, half-way points and the clip range included.
    y = np.concatenate([rng.normal(0, 1.5, 500),
                        (np.arange(20) + 0.5) * 4 / 255 - 2, [-3, 3, -2, 2]])
    np.testing.assert_array_equal(postprocess.quantize_rgb(y),
                                  ref_quantize_round(y))
    np.testing.assert_array_equal(postprocess.quantize_audio(y),
                                  ref_quantize_truncate(y))


# -- whole files ----------------------------------------------------------------------


def test_song_bytes_within_one_of_the_reference_on_the_exact_path(
        feature_extractor, weights_dir, clips, genuine_pca):
    root, _ = clips
    from scipy.io import wavfile
    rate, raw = wavfile.read(root / "song.wav")
    assert rate == 16000 and raw.ndim == 1
    ckpt = str(weights_dir / "vggish_model.ckpt")
    projected = ref_audio_pca(
        ref_vggish(ref_log_mel(raw / 32768.0), ckpt),
        genuine_pca)
    want = ref_quantize_truncate(projected)
    context, lists = parse(feature_extractor.extract(str(root / "song.wav")))
    got = np.stack(lists["audio"]).astype(int)
    assert got.shape == want.shape == (4, 128)
    assert np.abs(got - want).max() <= 1
    assert np.mean((want > 0) & (want < 255)) > 0.5  # not all clipped
    assert "rgb" not in lists and "mean_rgb" not in context
    assert context["id"].bytes_list.value[0] == b"song"
    # The release's means are of the dequantized bytes (they reach
    # 2.0078125, byte 255 dequantized).
    np.testing.assert_allclose(context["mean_audio"].float_list.value,
                               (got * 4 / 255 + 4 / 512 - 2).mean(axis=0),
                               atol=1e-6)
    assert np.abs(np.asarray(context["mean_audio"].float_list.value)
                  - (want * 4 / 255 + 4 / 512 - 2).mean(axis=0)).max() \
        <= 4 / 255


def test_video_record_matches_the_reference_of_its_frames(
        feature_extractor, weights_dir, clips):
    root, _ = clips
    path = str(root / "clip.mp4")
    frames, _ = media.decode_frames(path)
    paths = {w.name: str(weights_dir / w.name) for w in weights.ALL_FILES}
    mean = np.load(paths["mean.npy"])[:, 0].astype(np.float64)
    vals = np.load(paths["eigenvals.npy"])[:1024, 0].astype(np.float64)
    vecs = np.load(paths["eigenvecs.npy"]).astype(np.float64)
    raw = np.stack([ref_standin_inception(f) for f in frames])
    whitened = (raw - mean) @ vecs.T[:, :1024] / np.sqrt(vals + 1e-4)
    want = ref_quantize_round(whitened)
    context, lists = parse(feature_extractor.extract(path))
    # 6 video frames (0..5 s), 6 audio frames (6.5 s of audio): 6 frames.
    assert len(lists["rgb"]) == len(lists["audio"]) == 6
    assert all(len(f) == 1024 for f in lists["rgb"])
    assert all(len(f) == 128 for f in lists["audio"])
    assert np.abs(np.stack(lists["rgb"]).astype(int) - want).max() <= 1
    np.testing.assert_allclose(
        context["mean_rgb"].float_list.value,
        (np.stack(lists["rgb"]).astype(np.float64) * 4 / 255 + 4 / 512
         - 2).mean(axis=0),
        atol=1e-6)
    # The record reads back through the project's reader, both views.
    from yt8m_xmodal import config as config_lib
    from yt8m_xmodal import readers
    reader = readers.reader_for(config_lib.DataConfig(max_frames=10))
    batch = reader.parse_serialized(tf.constant(
        [feature_extractor.extract(path)]))
    assert int(batch["num_frames"][0]) == 6
    np.testing.assert_allclose(
        batch["video"][0, :6].numpy(),
        features.dequantize(np.stack(lists["rgb"])).numpy(), atol=1e-6)


def test_bad_inputs_name_the_file(feature_extractor, tmp_path):
    not_media = tmp_path / "notes.mp3"
    not_media.write_text("these are not sounds\n")
    with pytest.raises(DataError, match="notes.mp3: not a media file"):
        feature_extractor.extract(str(not_media))
    silent = tmp_path / "silent.mp4"
    standin_media.write_clip(str(silent), (0.0, 1.0, 2.0))
    with pytest.raises(DataError, match="silent.mp4: no audio stream"):
        feature_extractor.extract(str(silent))
    short = tmp_path / "short.wav"
    standin_media.write_wav(str(short), 0.97)  # 15,520 < 15,600 samples
    with pytest.raises(DataError, match="short.wav: 0.970 s of audio, "
                                        "shorter than one audio frame"):
        feature_extractor.extract(str(short))
    with pytest.raises(DataError, match="nothing-here"):
        extractor.resolve_inputs(f"{tmp_path}/nothing-here*.mp3")


def test_skip_errors_counts_and_no_output_without_it(
        feature_extractor, clips, tmp_path):
    root, _ = clips
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....garbage")
    paths = [str(root / "song.wav"), str(bad), str(root / "clip.mp4")]
    out = str(tmp_path / "out.tfrecord")
    with pytest.raises(DataError, match="bad.wav"):
        extractor.write_tfrecord(paths, out, feature_extractor)
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")
    assert extractor.write_tfrecord(paths, out, feature_extractor,
                                    skip_errors=True) == (2, 1)
    ids = [tf.train.SequenceExample.FromString(r.numpy()).context.feature[
        "id"].bytes_list.value[0] for r in tf.data.TFRecordDataset(out)]
    assert ids == [b"song", b"clip"]


# -- the commands ----------------------------------------------------------------------


def run_command(*args, env=None):
    # Without conftest's TF_CPP_MIN_LOG_LEVEL: the console as users see it.
    env = {k: v for k, v in {**os.environ, **(env or {})}.items()
           if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, *map(str, args)],
                          capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT, env=env)


def test_extract_command_writes_records_and_counts_skips(
        weights_dir, clips, tmp_path):
    root, _ = clips
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    out = tmp_path / "mine.tfrecord"
    result = run_command(
        "-m", "yt8m_xmodal.cli.extract",
        f"--input={root}/*.wav,{root / 'clip.mp4'},{tmp_path / 'broken.mp4'}",
        f"--output_file={out}", f"--weights_dir={weights_dir}",
        "--nodownload", "--skip_errors")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"3 records written to {out}; 1 skipped" in result.stdout
    assert "broken.mp4: not a media file" in result.stderr
    assert "Traceback" not in result.stderr


def test_extract_command_offline_without_weights(tmp_path, clips):
    root, _ = clips
    started = time.monotonic()
    result = run_command(
        "-m", "yt8m_xmodal.cli.extract", f"--input={root / 'song.wav'}",
        f"--output_file={tmp_path / 'x.tfrecord'}",
        f"--weights_dir={tmp_path / 'none'}", "--nodownload",
        env={"YT8M_XMODAL_CACHE": str(tmp_path / "cache")})
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(weights.ALL_FILES), result.stderr
    for wanted, line in zip(weights.ALL_FILES, lines):
        assert wanted.name in line and wanted.url in line
        assert str(tmp_path / "none") in line
    assert not (tmp_path / "x.tfrecord").exists()
    print(f"offline refusal in {elapsed:.1f} s (with TensorFlow's import)")


# -- your own media as the query ---------------------------------------------------------


@pytest.fixture(scope="module")
def media_model(tmp_path_factory):
    """A 2-step MeanPoolModel on YT8M's real feature sizes (1024, 128), and
    its synthetic test records (the gallery)."""
    from yt8m_xmodal import config as config_lib
    from yt8m_xmodal import training
    from yt8m_xmodal.tools import synthetic
    root = tmp_path_factory.mktemp("media_model")
    synthetic.generate_dataset(str(root / "data"), num_videos=40, seed=1,
                               num_shards=1, min_frames=4, max_frames=8,
                               num_classes=4)
    data = config_lib.DataConfig(max_frames=8, num_classes=4)
    training.train(config_lib.TrainConfig(
        train_data_pattern=str(root / "data" / "train-*"),
        train_dir=str(root / "run"), data=data, model="MeanPoolModel",
        model_config={"embedding_dim": 4, "hidden_units": 8}, subspace_dim=2,
        batch_size=16, num_epochs=1, max_steps=2, export_model_steps=2,
        seed=3))
    return root / "run", str(root / "data" / "test-*")


def test_embed_media_is_the_one_modality_embedding_of_its_features(
        media_model, weights_dir, clips):
    from yt8m_xmodal import modeling
    train_dir, _ = media_model
    model = modeling.load_export(modeling.latest_export(str(train_dir)))
    root, _ = clips
    reader_extractor = extractor.FeatureExtractor(str(weights_dir),
                                                  download=False)
    for name, modality, key in (("song.wav", "audio", "audio_codes"),
                                ("clip.mp4", "video", "rgb_codes")):
        out = model.embed_media(str(root / name), weights_dir=str(weights_dir))
        assert out["modality"] == modality
        assert out["embedding"].shape == (1, 2)
        codes = reader_extractor.features(str(root / name))[key]
        direct = getattr(model, f"embed_{modality}")(
            features.dequantize(codes[None]).numpy(), [len(codes)])
        np.testing.assert_allclose(out["embedding"], direct["embedding"],
                                   atol=1e-5)


def test_inference_query_media_prints_and_writes_the_matches(
        media_model, weights_dir, clips, tmp_path):
    train_dir, gallery = media_model
    root, _ = clips
    matches = tmp_path / "matches.csv"
    result = run_command(
        "inference.py", f"--train_dir={train_dir}",
        f"--gallery_data_pattern={gallery}",
        f"--query_media={root / 'song.wav'}", f"--weights_dir={weights_dir}",
        "--nodownload", "--top_k=3", f"--output_file={matches}")
    assert result.returncode == 0, result.stderr[-3000:]
    gallery_ids = {
        tf.train.SequenceExample.FromString(r.numpy()).context.feature[
            "id"].bytes_list.value[0].decode()
        for r in tf.data.TFRecordDataset(tf.io.gfile.glob(gallery))}
    lines = result.stdout.splitlines()
    start = lines.index("song: top videos")
    printed = [line.split()[1] for line in lines[start + 1:start + 4]]
    assert set(printed) <= gallery_ids and len(set(printed)) == 3
    with open(matches) as f:
        rows = f.read().splitlines()
    assert rows[1].startswith("song,audio,")
    assert rows[1].split(",")[2].split()[::2] == printed
