"""Keras layers of the towers, in the order the data flows through them.

    video-level [B, D] -> FrameNormalization -> InputProjection (optional)
        -> ProjectionHead -> embedding [B, E]

    frames [B, T, D] -> FrameNormalization -> ChunkSplit
        -> ChunkRecurrentEncoder -> ChunkPositionEncoding
        -> ChunkAttentionPooling (or MaskedMeanPooling) -> ProjectionHead
        -> embedding [B, E]
"""

from yt8m_xmodal.layers.attention import ATTENTION_KINDS, ChunkAttentionPooling
from yt8m_xmodal.layers.chunking import ChunkSplit
from yt8m_xmodal.layers.input_projection import InputProjection
from yt8m_xmodal.layers.normalization import (NORMALIZATION_KINDS,
                                              FrameNormalization)
from yt8m_xmodal.layers.pooling import MaskedMeanPooling, masked_mean_weights
from yt8m_xmodal.layers.position import (POSITION_ENCODINGS,
                                         ChunkPositionEncoding)
from yt8m_xmodal.layers.projection import ProjectionHead
from yt8m_xmodal.layers.recurrent import (RNN_TYPES, ChunkRecurrentEncoder,
                                          make_rnn, rnn_output_size)

__all__ = [
    "ATTENTION_KINDS", "NORMALIZATION_KINDS", "POSITION_ENCODINGS", "RNN_TYPES",
    "ChunkAttentionPooling", "ChunkPositionEncoding", "ChunkRecurrentEncoder",
    "ChunkSplit", "FrameNormalization", "InputProjection", "MaskedMeanPooling", "ProjectionHead",
    "make_rnn", "masked_mean_weights", "rnn_output_size",
]
