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
# Real YouTube-8M shards live beside the checkout; they are never copied in.
SHARED_YT8M = pathlib.Path(
    os.environ.get("YT8M_SHARED_DIR", REPO_ROOT.parent / "shared" / "yt8m"))


@pytest.fixture
def shared_video_dir():
    """`../shared/yt8m/video` with the real video-level shards, or skip."""
    path = SHARED_YT8M / "video"
    if not (path / "validate0000.tfrecord").exists():
        pytest.skip(f"real YT8M shards not found at {path}")
    return path


@pytest.fixture
def shared_vocabulary():
    """`../shared/yt8m/vocabulary.csv`, or skip."""
    path = SHARED_YT8M / "vocabulary.csv"
    if not path.exists():
        pytest.skip(f"YT8M vocabulary not found at {path}")
    return path
