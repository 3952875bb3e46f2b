"""The exported model answers one-modality queries: a song alone, a video
alone, through the SavedModel's signatures and the Python API."""

import doctest

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_FEATURE_SIZES
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import modeling
from yt8m_xmodal import readers
from yt8m_xmodal import training


@pytest.fixture(scope="module")
def chunk_export(tiny_frame_data, tmp_path_factory):
    """The shipped chunk-attention recipe, small, trained for two steps."""
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


def _records_and_batch(config, pattern):
    files = readers.resolve_files(pattern)
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(files)]
    batch = next(iter(readers.reader_for(config.data).batches(
        pattern, len(serialized))))
    return serialized, batch


def test_one_modality_embeddings_equal_the_two_stream_ones(
        chunk_export, tiny_frame_data):
    model = modeling.load_export(chunk_export)
    serialized, batch = _records_and_batch(
        model.config, f"{tiny_frame_data}/validate-*")
    both = model.embed_records(serialized)
    num_frames = batch["num_frames"].numpy()
    assert np.array_equal(both["id"], batch["id"].numpy())
    for modality in ("audio", "video"):
        embed = getattr(model, f"embed_{modality}")
        alone = embed(batch[modality].numpy(), num_frames)
        np.testing.assert_allclose(alone["embedding"], both[modality],
                                   atol=1e-5)
        np.testing.assert_allclose(alone["attention"],
                                   both[f"{modality}_attention"], atol=1e-6)


def test_attention_weights_cover_only_the_valid_chunks(
        chunk_export, tiny_frame_data):
    model = modeling.load_export(chunk_export)
    serialized, batch = _records_and_batch(
        model.config, f"{tiny_frame_data}/validate-*")
    out = model.embed_records(serialized)
    chunk = model.config.model_config.chunk_size
    valid_chunks = -(-batch["num_frames"].numpy() // chunk)
    for modality in ("audio", "video"):
        weights = out[f"{modality}_attention"]
        positions = np.arange(weights.shape[1])[None, :]
        valid = positions < valid_chunks[:, None]
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(weights[~valid], 0.0)
        assert (weights[valid] > 0).all()


def test_the_python_api_example_runs(chunk_export, tiny_frame_data):
    train_dir = chunk_export.split("/export/")[0]
    model = modeling.load_export(chunk_export)
    _, batch = _records_and_batch(model.config, f"{tiny_frame_data}/test-*")
    globs = {"load_export": modeling.load_export,
             "latest_export": modeling.latest_export, "train_dir": train_dir,
             "audio_frames": batch["audio"].numpy(),
             "num_frames": batch["num_frames"].numpy()}
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(modeling.ExportedModel,
                                             globs=globs):
        runner.run(test)
    assert runner.tries >= 3 and runner.failures == 0


def test_video_level_exports_embed_one_modality_too(tiny_video_data,
                                                    tmp_path):
    cfg = config_lib.VIDEO_LEVEL_RECIPE.replace(
        data=config_lib.DataConfig(frame_features=False,
                                   feature_sizes=TINY_FEATURE_SIZES,
                                   num_classes=4),
        model_config={"embedding_dim": 4, "hidden_units": 16}, subspace_dim=2,
        train_data_pattern=f"{tiny_video_data}/train-*",
        train_dir=str(tmp_path / "run"), batch_size=32, max_steps=2,
        export_model_steps=2)
    training.train(cfg)
    model = modeling.load_export(modeling.latest_export(cfg.train_dir))
    serialized, batch = _records_and_batch(
        model.config, f"{tiny_video_data}/validate-*")
    both = model.embed_records(serialized)
    assert "audio_attention" not in both
    for modality in ("audio", "video"):
        alone = getattr(model, f"embed_{modality}")(batch[modality].numpy())
        assert set(alone) == {"embedding"}
        np.testing.assert_allclose(alone["embedding"], both[modality],
                                   atol=1e-5)
