"""Stand-ins for tests, benchmarks and demos of `yt8m_xmodal.extraction`.

`write_standin_weights` writes random weights in the official formats under
the official names: a TF1 V1 checkpoint with VGGish's variable names and
shapes (the real network's size, 72 M parameters), the genuine-format
`vggish_pca_params.npz` (unless the genuine file is given), a GraphDef with
Inception's tensor names (`DecodeJpeg:0` uint8 H x W x 3, its own bilinear
resize to 299 and (x - 128) / 128, then a small random layer to
`pool_3/_reshape:0` [1, 2048]: NOT Inception-v3, far cheaper), and YT8M PCA
files of the official shapes. `write_clip` and `write_wav` make media with
PyAV: each second its own picture and tone.
"""

import fractions
import os
import shutil

import numpy as np
import tensorflow as tf

from yt8m_xmodal.extraction import inception
from yt8m_xmodal.extraction import vggish
from yt8m_xmodal.extraction import weights

# The stand-in graph pools the 299 x 299 image in 23 x 23 blocks: 13 x 13 x 3.
STANDIN_POOL = 23


def write_standin_weights(directory, seed=0, vggish_pca_path=None):
    """Writes the six files into `directory`; returns {name: path}."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    _write_vggish_checkpoint(os.path.join(directory,
                                          weights.VGGISH_CHECKPOINT.name), rng)
    pca_path = os.path.join(directory, weights.VGGISH_PCA.name)
    if vggish_pca_path:
        shutil.copyfile(vggish_pca_path, pca_path)
    else:
        size = vggish.EMBEDDING_SIZE
        np.savez(pca_path, pca_means=rng.normal(0, 0.1, size),
                 pca_eigen_vectors=rng.normal(0, 1 / np.sqrt(size),
                                              (size, size)))
    _write_inception_graph(os.path.join(directory,
                                        weights.INCEPTION_GRAPH.name), seed)
    size = inception.FEATURE_SIZE
    np.save(os.path.join(directory, weights.RGB_PCA_MEAN.name),
            np.full([size, 1], 0.5, np.float32))
    np.save(os.path.join(directory, weights.RGB_PCA_EIGENVALS.name),
            np.linspace(1.0, 0.01, size, dtype=np.float32)[:, None])
    np.save(os.path.join(directory, weights.RGB_PCA_EIGENVECS.name),
            rng.normal(0, 1 / np.sqrt(size), (size, size)).astype(np.float32))
    return {w.name: os.path.join(directory, w.name) for w in weights.ALL_FILES}


def _write_vggish_checkpoint(path, rng):
    """A TF1 V1 checkpoint (one file at `path`) with VGGish's variables."""
    values = {}
    for name, shape in vggish.checkpoint_shapes().items():
        if name.endswith("/weights"):
            fan_in = int(np.prod(shape[:-1]))
            # He scaling keeps activations of a random VGG in range; the
            # embedding layer is small so the genuine PCA sees values near
            # its means, as with the real network.
            scale = np.sqrt(2.0 / fan_in) * (
                0.02 if name.startswith("vggish/fc2/") else 1.0)
            values[name] = rng.normal(0.0, scale, shape).astype(np.float32)
        else:
            values[name] = rng.normal(0.0, 0.01, shape).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        # Zero-initialised, then loaded through feeds: values as graph
        # constants would copy 290 MB through a GraphDef.
        variables = {name: tf.compat.v1.get_variable(
            name, value.shape, initializer=tf.compat.v1.zeros_initializer())
            for name, value in values.items()}
        saver = tf.compat.v1.train.Saver(
            list(variables.values()),
            write_version=tf.compat.v1.train.SaverDef.V1)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for name, variable in variables.items():
                variable.load(values[name], session)
            saver.save(session, path, write_meta_graph=False,
                       write_state=False)


def standin_graph_weights(seed=0):
    """The random (W [507, 2048], b [2048]) of the stand-in graph's layer
    (its own random stream, so tests can recompute its output)."""
    rng = np.random.default_rng([seed, 1])
    inputs = (299 // STANDIN_POOL) ** 2 * 3
    w = rng.normal(0, np.sqrt(2.0 / inputs), (inputs, inception.FEATURE_SIZE))
    b = rng.normal(0, 0.1, inception.FEATURE_SIZE)
    return w.astype(np.float32), b.astype(np.float32)


def _write_inception_graph(path, seed):
    w, b = standin_graph_weights(seed)
    graph = tf.Graph()
    with graph.as_default():
        contents = tf.compat.v1.placeholder(tf.string, [],
                                            name="DecodeJpeg/contents")
        image = tf.io.decode_jpeg(contents, channels=3, name="DecodeJpeg")
        x = tf.expand_dims(tf.cast(image, tf.float32), 0, name="ExpandDims")
        # The 2015 graph's ResizeBilinear: align_corners=False, no half-pixel
        # centres.
        x = tf.compat.v1.image.resize_bilinear(x, [299, 299],
                                               name="ResizeBilinear")
        x = tf.multiply(tf.subtract(x, 128.0, name="Sub"), 1.0 / 128.0,
                        name="Mul")
        x = tf.nn.avg_pool2d(x, STANDIN_POOL, STANDIN_POOL, "VALID",
                             name="standin_pool")
        x = tf.reshape(x, [1, -1])
        x = tf.nn.relu(tf.matmul(x, tf.constant(w)) + tf.constant(b))
        tf.reshape(x, [1, inception.FEATURE_SIZE], name="pool_3/_reshape")
    with open(path, "wb") as f:
        f.write(graph.as_graph_def().SerializeToString())


# -- media ----------------------------------------------------------------------


def frame_level(index):
    """The grey level of stand-in video frame `index` (each frame its own)."""
    return (index * 5) % 250 + 2


def tone_hz(second):
    """The tone of second `second` of the stand-in media."""
    return 220.0 * (second + 1)


def tones(seconds, rate, channels=1, seed=0):
    """float [N, channels] in [-1, 1]: a tone per second plus a little
    noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    freq = tone_hz(np.floor(t))
    wave = 0.5 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 0.02, len(t))
    out = np.stack([wave * (1.0 - 0.3 * c) for c in range(channels)], axis=1)
    return np.clip(out, -1.0, 1.0)


def write_wav(path, seconds, rate=16000, channels=1, seed=0):
    """A 16-bit PCM wav of `tones`; returns the int16 samples [N, C]."""
    import av  # pylint: disable=import-outside-toplevel
    samples = np.round(tones(seconds, rate, channels, seed) * 32767).astype(
        np.int16)
    layout = "mono" if channels == 1 else "stereo"
    with av.open(path, "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16",
                                           layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return samples


def write_clip(path, frame_times, size=(64, 48), audio_seconds=None,
               audio_rate=16000):
    """An mp4 (mpeg4 video, AAC audio) whose frame i is shown from
    frame_times[i] (seconds; irregular gaps make a variable frame rate) and
    is grey at `frame_level(i)` with a bar at its second's position."""
    import av  # pylint: disable=import-outside-toplevel
    width, height = size
    with av.open(path, "w") as container:
        video = container.add_stream("mpeg4", rate=1000)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = fractions.Fraction(1, 1000)
        video.bit_rate = 4_000_000
        audio = None
        if audio_seconds:
            audio = container.add_stream("aac", rate=audio_rate, layout="mono")
        for i, t in enumerate(frame_times):
            picture = np.full([height, width, 3], frame_level(i), np.uint8)
            bar = int(t) % 8 * (width // 8)
            picture[:, bar:bar + width // 8, 0] = 255
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = int(round(t * 1000))
            frame.time_base = video.codec_context.time_base
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            samples = (tones(audio_seconds, audio_rate)[:, 0] * 32767).astype(
                np.int16)
            step = 1024
            for start in range(0, len(samples), step):
                chunk = samples[start:start + step].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format="s16",
                                                   layout="mono")
                frame.sample_rate = audio_rate
                frame.pts = start
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)
