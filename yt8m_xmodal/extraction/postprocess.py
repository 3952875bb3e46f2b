"""PCA and 8-bit quantization of the raw network outputs, as YT8M did.

Video (starter code, feature_extractor/feature_extractor.py and
extract_tfrecords_main.py): from yt8m_pca.tgz, mean = mean.npy[:, 0],
eigenvals = eigenvals.npy[:1024, 0], V = eigenvecs.npy.T[:, :1024];
y = ((x - mean) @ V) / sqrt(eigenvals + 1e-4); the bytes are
round((clip(y, -2, 2) + 2) * 255 / 4) (`features.quantize`).

Audio (AudioSet, vggish_postprocess.py): with vggish_pca_params.npz,
v = P (e - m), and the bytes are uint8((clip(v, -2, 2) + 2) * 255 / 4), which
truncates rather than rounds.

Both run in float64 numpy: they are small next to the networks.
"""

import numpy as np

from yt8m_xmodal import features

RGB_SIZE, AUDIO_SIZE = features.FEATURE_SIZES
# Added to the eigenvalues before whitening (feature_extractor.py).
EIGENVALUE_EPSILON = 1e-4


class RgbPca:
    """YT8M's 2048 -> 1024 whitening PCA of Inception features.

    Args:
      mean, eigenvals, eigenvecs: the arrays of mean.npy, eigenvals.npy and
        eigenvecs.npy as stored ([2048, 1], [>=1024, 1], [>=1024, 2048]).
    """

    def __init__(self, mean, eigenvals, eigenvecs):
        self.mean = np.asarray(mean, np.float64)[:, 0]
        self.eigenvals = np.asarray(eigenvals, np.float64)[:RGB_SIZE, 0]
        self.eigenvecs = np.asarray(eigenvecs, np.float64).T[:, :RGB_SIZE]

    def __call__(self, x):
        """[T, 2048] -> float64 [T, 1024], before clipping."""
        return ((np.asarray(x, np.float64) - self.mean) @ self.eigenvecs
                / np.sqrt(self.eigenvals + EIGENVALUE_EPSILON))


class AudioPca:
    """VGGish's 128 -> 128 PCA (the whitening is in the eigenvector rows).

    Args:
      pca_means: [128]; pca_eigen_vectors: [128, 128] (the npz's arrays).
    """

    def __init__(self, pca_means, pca_eigen_vectors):
        self.means = np.asarray(pca_means, np.float64).reshape(-1)
        self.matrix = np.asarray(pca_eigen_vectors, np.float64)

    def __call__(self, e):
        """[T, 128] -> float64 [T, 128], before clipping."""
        return (np.asarray(e, np.float64) - self.means) @ self.matrix.T


def clip(y):
    """The range the bytes can hold, [-2, 2]: what the codes stand for,
    before rounding (the video-level means are taken over these)."""
    return np.clip(y, features.QUANTIZE_MIN, features.QUANTIZE_MAX)


def quantize_rgb(y):
    """YT8M's video bytes: round half to even, as `features.quantize`."""
    return features.quantize(y)


def quantize_audio(v):
    """VGGish's audio bytes: the scaled value truncated, not rounded."""
    scale = 255.0 / (features.QUANTIZE_MAX - features.QUANTIZE_MIN)
    return ((clip(v) - features.QUANTIZE_MIN) * scale).astype(np.uint8)
