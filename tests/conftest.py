"""Shared test fixtures.

Two logical CPU devices are configured before anything else touches
TensorFlow's runtime, so tf.distribute tests can run a 2-replica
MirroredStrategy on one CPU.
"""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Real YouTube-8M shards, never copied in: $YT8M_DATA_DIR ($YT8M_SHARED_DIR,
# its older name), by default ../shared/yt8m beside the checkout.
DATA_DIR = pathlib.Path(
    os.environ.get("YT8M_DATA_DIR") or os.environ.get("YT8M_SHARED_DIR")
    or REPO_ROOT.parent / "shared" / "yt8m")


@pytest.fixture
def shared_video_dir():
    """`$YT8M_DATA_DIR/video` with the real video-level shards, or skip."""
    path = DATA_DIR / "video"
    if not (path / "validate0000.tfrecord").exists():
        pytest.skip(f"real YT8M shards not found at {path}")
    return path


@pytest.fixture
def shared_vocabulary():
    """`$YT8M_DATA_DIR/vocabulary.csv`, or skip."""
    path = DATA_DIR / "vocabulary.csv"
    if not path.exists():
        pytest.skip(f"YT8M vocabulary not found at {path}")
    return path


def _tiny_dataset(root, frame_features):
    from yt8m_xmodal.tools import synthetic
    synthetic.generate_dataset(
        str(root), num_videos=160, seed=7, num_shards=2,
        frame_features=frame_features, min_frames=10, max_frames=40,
        feature_sizes=TINY_FEATURE_SIZES, num_classes=4)
    return root


# Small feature sizes keep end-to-end tests fast; the reader and models take
# sizes from the same flags as for real data.
TINY_FEATURE_SIZES = (16, 8)


@pytest.fixture(scope="session")
def tiny_frame_data(tmp_path_factory):
    """A 160-video synthetic frame-level set (16-d video, 8-d audio)."""
    return _tiny_dataset(tmp_path_factory.mktemp("tiny_frame"), True)


@pytest.fixture(scope="session")
def tiny_video_data(tmp_path_factory):
    """The same set at video level (mean_rgb / mean_audio)."""
    return _tiny_dataset(tmp_path_factory.mktemp("tiny_video"), False)


@pytest.fixture(scope="session")
def trained_dir(tiny_frame_data, tmp_path_factory):
    """A train_dir with checkpoints and exports at steps 2 and 4 (MeanPoolModel)."""
    from yt8m_xmodal import config as config_lib
    from yt8m_xmodal import training
    train_dir = tmp_path_factory.mktemp("trained") / "run"
    data = config_lib.DataConfig(feature_sizes=TINY_FEATURE_SIZES,
                                 max_frames=40, num_classes=4)
    cfg = config_lib.TrainConfig(
        train_data_pattern=os.path.join(tiny_frame_data, "train-*"),
        train_dir=str(train_dir), data=data, model="MeanPoolModel",
        model_config={"embedding_dim": 4, "hidden_units": 16}, subspace_dim=2,
        batch_size=32, num_epochs=5, max_steps=4, export_model_steps=2, seed=3)
    training.train(cfg)
    return train_dir


@pytest.fixture(scope="session")
def chunk_export(tiny_frame_data, tmp_path_factory):
    """The shipped chunk-attention recipe, small, trained for two steps:
    its export directory (test_serving, test_service)."""
    from yt8m_xmodal import config as config_lib
    from yt8m_xmodal import modeling
    from yt8m_xmodal import training
    train_dir = tmp_path_factory.mktemp("serving") / "run"
    cfg = config_lib.TrainConfig(
        data=config_lib.DataConfig(feature_sizes=TINY_FEATURE_SIZES,
                                   max_frames=40, num_classes=4),
        model_config={"embedding_dim": 5, "chunk_size": 8, "rnn_units": 8,
                      "hidden_units": 16, "attention_units": 8},
        subspace_dim=3, train_data_pattern=f"{tiny_frame_data}/train-*",
        train_dir=str(train_dir), batch_size=32, max_steps=2,
        export_model_steps=2, seed=5)
    training.train(cfg)
    return modeling.latest_export(str(train_dir))


def checkpoint_embeddings(train_dir, data_pattern, batch_size):
    """Subspace embeddings of a data set with train_dir's latest checkpoint,
    read through the project's reader (the path eval.py takes)."""
    from yt8m_xmodal import evaluation
    from yt8m_xmodal import modeling
    from yt8m_xmodal import readers
    config, model, subspace, _ = modeling.restore(str(train_dir))
    reader = readers.reader_for(config.data)
    return evaluation.embed_dataset(
        model, reader.batches(data_pattern, batch_size), subspace=subspace)
