"""YT8M-compatible features of your own media files (`pip install ".[media]"`).

The stages, top-down: `media` (PyAV decoding: 1 fps RGB frames, 16 kHz mono
audio) -> `vggish` (log-mel patches and VGGish) and `inception` (the 2015
Inception-v3 graph) -> `postprocess` (PCA and 8-bit quantization) ->
`extractor` (`FeatureExtractor(weights_dir).extract(path)`: one serialized
frame-level SequenceExample). `weights` names, fetches and checks the
official weight files. See docs/extraction.md.
"""

from yt8m_xmodal.extraction.extractor import ExtractConfig
from yt8m_xmodal.extraction.extractor import FeatureExtractor
from yt8m_xmodal.extraction.extractor import resolve_inputs
from yt8m_xmodal.extraction.extractor import write_tfrecord

__all__ = ["ExtractConfig", "FeatureExtractor", "resolve_inputs",
           "write_tfrecord"]
