"""The official weight files: names, URLs, hashes, download and checks.

A weights directory holds the files under their official names. A missing
file is looked for in the cache directory, then downloaded there from its
official URL (unpacked from its .tgz where it ships in one) and checked by
sha256 where the hash is published. A file the user supplies is checked for
format (names, shapes) when loaded; a hash other than the official one is
logged, not refused, since mirrors and fine-tuned copies exist. Offline,
the first failed connection ends the attempt and every missing file is named
in one line each, with its URL and where to put it.
"""

import dataclasses
import hashlib
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request

import numpy as np

from yt8m_xmodal.errors import DataError
from yt8m_xmodal.extraction import postprocess

log = logging.getLogger("yt8m_xmodal")

# Seconds a connection may stay silent: an offline machine fails in
# seconds, not minutes.
DOWNLOAD_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class WeightFile:
    """One official file: its name, where it comes from, its sha256 (None
    where none is published) and the archive member it is, if any."""
    name: str
    url: str
    sha256: str = None
    member: str = None


_AUDIOSET = "https://storage.googleapis.com/audioset/"
_INCEPTION_TGZ = ("http://download.tensorflow.org/models/image/imagenet/"
                  "inception-2015-12-05.tgz")
_YT8M_PCA_TGZ = "http://data.yt8m.org/yt8m_pca.tgz"

VGGISH_CHECKPOINT = WeightFile(
    "vggish_model.ckpt", _AUDIOSET + "vggish_model.ckpt",
    "0962b1914e3e053922d957c45bc84a78c985765641dc6bceeeb3a7d8dfecfdf6")
VGGISH_PCA = WeightFile(
    "vggish_pca_params.npz", _AUDIOSET + "vggish_pca_params.npz",
    "4d878af3e306defbfb37095365aa7e5a6cecb86bad13e859e626151c4e6a8b9d")
INCEPTION_GRAPH = WeightFile("classify_image_graph_def.pb", _INCEPTION_TGZ,
                             member="classify_image_graph_def.pb")
RGB_PCA_MEAN = WeightFile("mean.npy", _YT8M_PCA_TGZ, member="mean.npy")
RGB_PCA_EIGENVALS = WeightFile("eigenvals.npy", _YT8M_PCA_TGZ,
                               member="eigenvals.npy")
RGB_PCA_EIGENVECS = WeightFile("eigenvecs.npy", _YT8M_PCA_TGZ,
                               member="eigenvecs.npy")
AUDIO_FILES = (VGGISH_CHECKPOINT, VGGISH_PCA)
VIDEO_FILES = (INCEPTION_GRAPH, RGB_PCA_MEAN, RGB_PCA_EIGENVALS,
               RGB_PCA_EIGENVECS)
ALL_FILES = AUDIO_FILES + VIDEO_FILES


def cache_dir():
    """`<the package's cache directory>/weights` ($YT8M_XMODAL_CACHE)."""
    from yt8m_xmodal.tools import synthetic  # pylint: disable=import-outside-toplevel
    return os.path.join(synthetic.default_cache_dir(), "weights")


def resolve(weights_dir=None, files=ALL_FILES, download=True):
    """{name: path} of every file, downloading the missing ones.

    Args:
      weights_dir: where the user keeps them (None: the cache directory
        only).
      download: fetch missing files from their official URLs into the cache
        directory; False only looks.

    Raises:
      DataError: one line per missing file (name, URL, where to put it),
        when some cannot be found or fetched.
    """
    cache = cache_dir()
    places = [d for d in (weights_dir, cache) if d]
    found, missing = {}, []
    for wanted in files:
        path = next((os.path.join(d, wanted.name) for d in places
                     if os.path.isfile(os.path.join(d, wanted.name))), None)
        if path is None:
            missing.append(wanted)
        else:
            found[wanted.name] = path
            check_hash(wanted, path)
    failure = None if download else "downloads off"
    for wanted in missing:
        if failure is None:
            try:
                found[wanted.name] = _download(wanted, cache)
                continue
            except _Offline as e:
                failure = str(e)
    still = [w for w in missing if w.name not in found]
    if still:
        target = weights_dir or cache
        raise DataError("\n".join(
            f"missing weight file {w.name} ({failure}): download {w.url}"
            + (f", unpack {w.member} from it," if w.member else "")
            + f" and put it in {target}" for w in still))
    return found


class _Offline(Exception):
    """A download that could not connect or was cut off."""


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_hash(wanted, path):
    """Logs (does not refuse) a file whose hash is not the official one."""
    if wanted.sha256 is None:
        return True
    if _sha256(path) != wanted.sha256:
        log.warning("%s is not the official %s (sha256 differs): a mirror or "
                    "fine-tuned copy, used as it is", path, wanted.name)
        return False
    return True


def _download(wanted, cache):
    """Fetches `wanted` into `cache`; returns its path."""
    os.makedirs(cache, exist_ok=True)
    log.info("downloading %s from %s", wanted.name, wanted.url)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download_") as tmp:
        fetched = os.path.join(tmp, os.path.basename(wanted.url))
        try:
            with urllib.request.urlopen(wanted.url,
                                        timeout=DOWNLOAD_TIMEOUT) as response, \
                    open(fetched, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except (urllib.error.URLError, socket.timeout, OSError) as e:
            raise _Offline(f"cannot fetch it: "
                           f"{getattr(e, 'reason', None) or e}") from None
        if wanted.sha256 and _sha256(fetched) != wanted.sha256:
            raise _Offline(f"{wanted.url} arrived damaged (sha256 differs)")
        if wanted.member is None:
            path = os.path.join(cache, wanted.name)
            os.replace(fetched, path)
            return path
        # The archive holds the other files of its kind too: keep them all.
        with tarfile.open(fetched, "r:gz") as tar:
            for member in tar.getmembers():
                base = os.path.basename(member.name)
                if member.isfile() and base in {w.member for w in ALL_FILES}:
                    member.name = base
                    tar.extract(member, tmp, filter="data")
                    os.replace(os.path.join(tmp, base),
                               os.path.join(cache, base))
    path = os.path.join(cache, wanted.name)
    if not os.path.isfile(path):
        raise _Offline(f"{wanted.url} holds no {wanted.member}")
    return path


# -- loading, with format checks ---------------------------------------------


def _array(path, expected_ndim):
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a numpy .npy file ({e})") from None
    if array.ndim != expected_ndim:
        raise DataError(f"{path}: shape {array.shape}, expected "
                        f"{expected_ndim} dimensions")
    return array


def load_rgb_pca(paths):
    """postprocess.RgbPca from {name: path} of mean.npy, eigenvals.npy and
    eigenvecs.npy, checked for YT8M's shapes."""
    mean = _array(paths[RGB_PCA_MEAN.name], 2)
    eigenvals = _array(paths[RGB_PCA_EIGENVALS.name], 2)
    eigenvecs = _array(paths[RGB_PCA_EIGENVECS.name], 2)
    inception_size = 2048
    checks = ((RGB_PCA_MEAN, mean, mean.shape[0] == inception_size,
               f"[{inception_size}, 1]"),
              (RGB_PCA_EIGENVALS, eigenvals,
               eigenvals.shape[0] >= postprocess.RGB_SIZE,
               f"[>= {postprocess.RGB_SIZE}, 1]"),
              (RGB_PCA_EIGENVECS, eigenvecs,
               eigenvecs.shape[0] >= postprocess.RGB_SIZE
               and eigenvecs.shape[1] == inception_size,
               f"[>= {postprocess.RGB_SIZE}, {inception_size}]"))
    for wanted, array, ok, shape in checks:
        if not ok:
            raise DataError(f"{paths[wanted.name]}: shape {array.shape}, "
                            f"YT8M's {wanted.name} is {shape}")
    return postprocess.RgbPca(mean, eigenvals, eigenvecs)


def load_audio_pca(path):
    """postprocess.AudioPca from vggish_pca_params.npz, checked."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a numpy .npz file ({e})") from None
    size = postprocess.AUDIO_SIZE
    for key, shape in (("pca_means", (size,)),
                       ("pca_eigen_vectors", (size, size))):
        if key not in arrays:
            raise DataError(f"{path}: no {key} (not vggish_pca_params.npz)")
        if np.size(arrays[key]) != np.prod(shape):
            raise DataError(f"{path}: {key} has shape {arrays[key].shape}, "
                            f"expected {shape}")
    return postprocess.AudioPca(arrays["pca_means"],
                                arrays["pca_eigen_vectors"].reshape(size, size))
