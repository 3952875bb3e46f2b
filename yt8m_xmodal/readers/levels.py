"""`reader_for`: the reader of the level a `config.DataConfig` names."""

from yt8m_xmodal.readers.frame import YT8MFrameFeatureReader
from yt8m_xmodal.readers.video import YT8MAggregatedFeatureReader


def reader_for(data, ragged_labels=False, skip_corrupt=False):
    """The reader a `config.DataConfig` describes (as the starter code's
    train.py picks one from its flags).

    Args:
      data: a `config.DataConfig` (frame or video level, feature names and
        sizes, max_frames, num_classes).
      ragged_labels, skip_corrupt: see the reader classes.
    """
    if data.frame_features:
        return YT8MFrameFeatureReader(
            data.feature_names, data.feature_sizes, max_frames=data.max_frames,
            num_classes=data.num_classes, ragged_labels=ragged_labels,
            skip_corrupt=skip_corrupt, id_feature=data.id_feature)
    return YT8MAggregatedFeatureReader(
        data.feature_names, data.feature_sizes, num_classes=data.num_classes,
        ragged_labels=ragged_labels, skip_corrupt=skip_corrupt,
        id_feature=data.id_feature)
