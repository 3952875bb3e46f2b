"""VGGish, the audio half of YT8M's features: log-mel patches and the network.

Facts from AudioSet's vggish_params.py, mel_features.py and vggish_slim.py:
16 kHz mono; STFT with a 400-sample periodic Hann window, hop 160, FFT 512,
magnitude; 64 HTK mel bands over 125-7500 Hz with the DC row zeroed; log(mel
+ 0.01); patches of 96 x 64. YT8M's frames are one per second, so patch k
starts at sample 16000 k (MediaPipe's youtube8m graph), not at VGGish's own
0.96 s hop, which drifts (300 s would give 312 patches). The network is
conv64, pool, conv128, pool, 2 x conv256, pool, 2 x conv512, pool, flatten,
fc4096 x 2, fc128 with no ReLU on fc128, as in the current vggish_slim.py.
Its official weights are a TF1 V1 checkpoint read here by variable name.
"""

import functools

import keras
import numpy as np
import tensorflow as tf

from yt8m_xmodal.extraction import media

STFT_WINDOW = 400       # 0.025 s at 16 kHz
STFT_HOP = 160          # 0.010 s
FFT_LENGTH = 512        # the next power of two above the window
NUM_MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
PATCH_FRAMES = 96       # 0.96 s of STFT frames
# YT8M's 1 fps: patch k starts at STFT frame 100 k, i.e. sample 16000 k, and
# covers samples [16000 k, 16000 k + 15600).
PATCH_HOP_FRAMES = media.SAMPLE_RATE // STFT_HOP
PATCH_SAMPLES = (PATCH_FRAMES - 1) * STFT_HOP + STFT_WINDOW
EMBEDDING_SIZE = 128

# Keras layer name -> variable scope in the official checkpoint
# (slim.repeat names the repeated layers conv3/conv3_1, conv3/conv3_2, ...).
CHECKPOINT_SCOPES = {
    "conv1": "vggish/conv1",
    "conv2": "vggish/conv2",
    "conv3_1": "vggish/conv3/conv3_1",
    "conv3_2": "vggish/conv3/conv3_2",
    "conv4_1": "vggish/conv4/conv4_1",
    "conv4_2": "vggish/conv4/conv4_2",
    "fc1_1": "vggish/fc1/fc1_1",
    "fc1_2": "vggish/fc1/fc1_2",
    "fc2": "vggish/fc2",
}
# (layer name, filters or units), in order; pools follow conv1, conv2,
# conv3_2 and conv4_2.
_CONVS = (("conv1", 64), ("conv2", 128), ("conv3_1", 256), ("conv3_2", 256),
          ("conv4_1", 512), ("conv4_2", 512))
_POOL_AFTER = ("conv1", "conv2", "conv3_2", "conv4_2")
_FCS = (("fc1_1", 4096, "relu"), ("fc1_2", 4096, "relu"),
        ("fc2", EMBEDDING_SIZE, None))


def checkpoint_shapes():
    """{variable name: shape} of the official checkpoint's VGGish weights."""
    shapes, channels = {}, 1
    for name, filters in _CONVS:
        shapes[f"{CHECKPOINT_SCOPES[name]}/weights"] = (3, 3, channels, filters)
        shapes[f"{CHECKPOINT_SCOPES[name]}/biases"] = (filters,)
        channels = filters
    # After four 2x2 pools a 96 x 64 patch is 6 x 4 x 512.
    width = 6 * 4 * 512
    for name, units, _ in _FCS:
        shapes[f"{CHECKPOINT_SCOPES[name]}/weights"] = (width, units)
        shapes[f"{CHECKPOINT_SCOPES[name]}/biases"] = (units,)
        width = units
    return shapes


def hertz_to_mel(hertz):
    """The HTK mel scale, 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(hertz, np.float64) / 700.0)


def mel_matrix():
    """[257, 64] float64 triangular weights from STFT bins to mel bands,
    with the DC row zero, as mel_features.spectrogram_to_mel_matrix."""
    num_bins = FFT_LENGTH // 2 + 1
    bins_mel = hertz_to_mel(np.linspace(0.0, media.SAMPLE_RATE / 2, num_bins))
    edges = np.linspace(hertz_to_mel(MEL_MIN_HZ), hertz_to_mel(MEL_MAX_HZ),
                        NUM_MEL_BANDS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def num_patches(num_samples):
    """Audio frames of a 16 kHz signal: patches that fit whole."""
    if num_samples < PATCH_SAMPLES:
        return 0
    return (num_samples - PATCH_SAMPLES) // media.SAMPLE_RATE + 1


def log_mel_patches(samples):
    """16 kHz mono samples [N] -> float32 log-mel patches [T, 96, 64], one
    per second, in TF ops; T = num_patches(N).

    Example:
    >>> log_mel_patches(tf.zeros([48000])).shape
    TensorShape([3, 96, 64])
    """
    return _log_mel_patches(tf.convert_to_tensor(samples, tf.float32),
                            _mel_constant())


@functools.lru_cache(maxsize=1)
def _mel_constant():
    return tf.constant(mel_matrix(), tf.float32)


@tf.function(input_signature=[tf.TensorSpec([None], tf.float32),
                              tf.TensorSpec([FFT_LENGTH // 2 + 1,
                                             NUM_MEL_BANDS], tf.float32)])
def _log_mel_patches(samples, mel):
    # tf.signal.hann_window is periodic by default, as VGGish's.
    spectrum = tf.abs(tf.signal.stft(samples, STFT_WINDOW, STFT_HOP,
                                     FFT_LENGTH,
                                     window_fn=tf.signal.hann_window))
    log_mel = tf.math.log(tf.matmul(spectrum, mel) + LOG_OFFSET)
    # Frames that fit whole: patch k exists iff 16000 k + 15600 <= N.
    return tf.signal.frame(log_mel, PATCH_FRAMES, PATCH_HOP_FRAMES, axis=0)


def build_vggish():
    """The VGGish network as a Keras model: [B, 96, 64] -> [B, 128]."""
    inputs = keras.Input([PATCH_FRAMES, NUM_MEL_BANDS], name="log_mel")
    net = keras.layers.Reshape([PATCH_FRAMES, NUM_MEL_BANDS, 1])(inputs)
    for name, filters in _CONVS:
        net = keras.layers.Conv2D(filters, 3, padding="same",
                                  activation="relu", name=name)(net)
        if name in _POOL_AFTER:
            net = keras.layers.MaxPooling2D(2, 2, padding="same",
                                            name=f"pool_{name}")(net)
    # NHWC flattening, as slim.flatten: fc1's rows are in (h, w, c) order.
    net = keras.layers.Flatten()(net)
    for name, units, activation in _FCS:
        net = keras.layers.Dense(units, activation=activation, name=name)(net)
    return keras.Model(inputs, net, name="vggish")


def load_checkpoint_weights(model, checkpoint_path):
    """Sets `model`'s weights from a VGGish checkpoint, by variable name.

    Raises:
      ValueError: naming the checkpoint and the variable, when one is
        missing or has another shape.
    """
    reader = tf.train.load_checkpoint(checkpoint_path)
    have = reader.get_variable_to_shape_map()
    for variable, shape in checkpoint_shapes().items():
        if variable not in have:
            raise ValueError(f"{checkpoint_path}: no variable {variable} (not "
                             "a VGGish checkpoint)")
        if tuple(have[variable]) != shape:
            raise ValueError(f"{checkpoint_path}: {variable} has shape "
                             f"{tuple(have[variable])}, VGGish's is {shape}")
    for layer_name, scope in CHECKPOINT_SCOPES.items():
        model.get_layer(layer_name).set_weights(
            [reader.get_tensor(f"{scope}/weights"),
             reader.get_tensor(f"{scope}/biases")])


class VGGish:
    """Log-mel front end and network with loaded weights: samples ->
    float32 [T, 128] embeddings (before PCA).

    Args:
      checkpoint_path: the official `vggish_model.ckpt` (or a stand-in in
        its format).
      batch_size: patches per network call; bounds memory (conv1 alone
        holds 96 x 64 x 64 floats per patch).
    """

    def __init__(self, checkpoint_path, batch_size=32):
        self.network = build_vggish()
        load_checkpoint_weights(self.network, checkpoint_path)
        self.batch_size = batch_size
        self._embed = tf.function(
            lambda x: self.network(x, training=False),
            input_signature=[tf.TensorSpec([None, PATCH_FRAMES,
                                            NUM_MEL_BANDS], tf.float32)])

    def patches(self, samples):
        """[T, 96, 64] float32 log-mel patches (numpy)."""
        if num_patches(len(samples)) == 0:
            return np.zeros([0, PATCH_FRAMES, NUM_MEL_BANDS], np.float32)
        return log_mel_patches(samples).numpy()

    def embed(self, samples):
        """[T, 128] float32 embeddings of 16 kHz mono `samples`."""
        patches = self.patches(samples)
        out = [self._embed(tf.constant(patches[i:i + self.batch_size])).numpy()
               for i in range(0, len(patches), self.batch_size)]
        if not out:
            return np.zeros([0, EMBEDDING_SIZE], np.float32)
        return np.concatenate(out)
