"""yt8m_xmodal: temporal audio-video retrieval on YouTube-8M features.

The data path, top-down:

    records on disk -> readers -> layers (chunk, recurrent, attention) -> towers
        -> losses / subspace -> train.py / eval.py / inference.py
"""

__version__ = "0.1.0"
