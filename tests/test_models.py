"""Tests of the towers and two-tower models: masking, order, saving, grads."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from yt8m_xmodal import config as config_lib
from yt8m_xmodal import models
from yt8m_xmodal.errors import ConfigError
from yt8m_xmodal.towers import ChunkAttentionTower, MeanPoolTower

# Small sizes keep the suite fast.
SIZES = dict(video_size=16, audio_size=8)
HEAD = dict(embedding_dim=6, hidden_units=12)
# Test cases: a model class and the config that makes the case. The chunk
# cases read 30-frame chunks with learned positions (10 chunk positions for
# 300 frames) and no input projection unless a variant says otherwise; the
# shipped recipe itself is trained end to end in test_training.py.
_CHUNK = dict(chunk_size=30, position_encoding="learned", rnn_units=8,
              input_projection_units=0)
CASES = {
    "ChunkAttentionModel": (models.ChunkAttentionModel,
                            dict(_CHUNK, attention_units=8, num_heads=2)),
    "ChunkMeanModel": (models.ChunkAttentionModel,
                       dict(_CHUNK, attention="mean")),
    "FrameLstmModel": (models.FrameLstmModel, dict(rnn_units=8)),
    "MeanPoolModel": (models.MeanPoolModel, {}),
    "VideoLevelMlpModel": (models.VideoLevelMlpModel, {}),
}
# Models with towers to train (LinearCcaModel, the identity towers, has its
# own tests in test_linear_cca_model.py).
TRAINED_MODELS = sorted(set(models.MODELS) - {"LinearCcaModel"})
FRAME_MODELS = ("ChunkAttentionModel", "ChunkMeanModel", "FrameLstmModel",
                "MeanPoolModel")
CHUNK_MODELS = ("ChunkAttentionModel", "ChunkMeanModel")
# Variants of the method that exercise every layer option at least once.
VARIANTS = {
    "gru_additive_learned": dict(),
    "bilstm_multihead_sinusoidal": dict(rnn_type="bilstm",
                                        attention="multihead",
                                        position_encoding="sinusoidal",
                                        input_norm="layer"),
    "lstm_additive_none": dict(rnn_type="lstm", position_encoding="none",
                               num_hidden_layers=2, dropout=0.2),
    "bigru_multihead": dict(rnn_type="bigru", attention="multihead"),
    "gru_input_projection": dict(input_projection_units=4),
    # 10 chunk positions (300 frames / 30) of 2 dimensions each.
    "gru_slot_position": dict(position_encoding="slot", embedding_dim=20),
}


def small_model(name, **overrides):
    model_class, case = CASES[name]
    return model_class(**{**SIZES, **HEAD, **case, **overrides})


def frames(num_videos, num_frames, size, seed):
    return np.random.default_rng(seed).normal(
        size=(num_videos, num_frames, size)).astype(np.float32)


def frame_batch(video, audio, lengths, num_frames, junk=0.0):
    """A reader-style batch padded to `num_frames`; padding holds `junk`."""
    lengths = np.asarray(lengths, np.int32)
    mask = np.arange(num_frames)[None, :] < lengths[:, None]

    def pad(x):
        out = np.full((x.shape[0], num_frames, x.shape[2]), junk, np.float32)
        n = min(num_frames, x.shape[1])
        out[:, :n] = x[:, :n]
        return np.where(mask[..., None], out, junk).astype(np.float32)
    return {"id": tf.constant([f"v{i}" for i in range(len(lengths))]),
            "video": tf.constant(pad(video)), "audio": tf.constant(pad(audio)),
            "mask": tf.constant(mask), "num_frames": tf.constant(lengths)}


def video_batch(num_videos=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"video": tf.constant(rng.normal(size=(num_videos, 16)), tf.float32),
            "audio": tf.constant(rng.normal(size=(num_videos, 8)), tf.float32)}


def batch_for(name, seed=0):
    if name == "VideoLevelMlpModel":
        return video_batch(seed=seed)
    return frame_batch(frames(3, 75, 16, seed), frames(3, 75, 8, seed + 1),
                       [75, 31, 9], 75)


def assert_same_embeddings(a, b, atol=1e-5):
    for key in ("video", "audio"):
        np.testing.assert_allclose(a[key], b[key], atol=atol, rtol=0)


# Building -----------------------------------------------------------------

def test_the_library_defaults_are_the_shipped_recipe():
    """ChunkAttentionModel() and the model of TrainConfig() are one model."""
    recipe = config_lib.TrainConfig()
    built = models.model_from_config(recipe.model, recipe.data, recipe.model_config)
    default = models.ChunkAttentionModel()
    assert ({**built.get_config(), "name": None}
            == {**default.get_config(), "name": None})
    assert default.config == recipe.model_config
    tower = ChunkAttentionTower(1024)
    for name, value in dataclasses.asdict(recipe.model_config).items():
        assert tower.get_config()[name] == value, name


def test_build_model_names_the_model_for_unknown_names():
    data = config_lib.DataConfig()
    with pytest.raises(ConfigError, match="model=LstmModel is not one of"):
        models.model_from_config("LstmModel", data)
    assert set(models.MODELS) == {"ChunkAttentionModel", "FrameLstmModel",
                                  "MeanPoolModel", "VideoLevelMlpModel",
                                  "LinearCcaModel"}


@pytest.mark.parametrize("field,value", [
    ("rnn_type", "rnn"), ("attention", "max"), ("position_encoding", "rope"),
    ("input_norm", "batch"), ("chunk_size", 0), ("dropout", 1.0),
    ("embedding_dim", -1), ("input_projection_units", -1)])
def test_a_bad_value_names_its_config_field(field, value):
    with pytest.raises(ConfigError, match=f"^{field}={value}"):
        models.ChunkAttentionModel(**{field: value})


def test_input_projection_shrinks_the_recurrent_input_and_skips_lstm():
    plain = small_model("ChunkAttentionModel", video_size=64)
    projected = small_model("ChunkAttentionModel", video_size=64,
                            input_projection_units=4)
    batch = frame_batch(frames(2, 40, 64, 0), frames(2, 40, 8, 1), [40, 9], 40)
    plain(batch), projected(batch)
    kernel = projected.video_tower.encoder.rnn.cell.kernel
    assert tuple(kernel.shape) == (4, 3 * _CHUNK["rnn_units"])
    # 64x24 GRU input kernel -> 64x4 projection (+4 bias) and 4x24 kernel.
    saved = 64 * 24 - (64 * 4 + 4 + 4 * 24)
    saved += 8 * 24 - (8 * 4 + 4 + 4 * 24)  # audio: the projection costs
    assert plain.count_params() - projected.count_params() == saved
    # The baseline LSTM is YT8M's LstmModel: it takes no projection.
    with pytest.raises(ConfigError, match="takes no option "
                       "input_projection_units"):
        small_model("FrameLstmModel", input_projection_units=4)


def test_options_of_other_models_and_typos_are_refused():
    with pytest.raises(ConfigError, match="model=MeanPoolModel takes no "
                       "option chunk_size"):
        small_model("MeanPoolModel", chunk_size=10)
    with pytest.raises(ConfigError, match="rnn_unit"):
        models.ChunkAttentionModel(rnn_unit=8)
    with pytest.raises(ConfigError, match="attention_units=10 must be "
                       "divisible by num_heads=4"):
        models.ChunkAttentionModel(attention="multihead", attention_units=10,
                                   num_heads=4)


def test_feature_size_mismatch_names_feature_sizes():
    model = small_model("ChunkAttentionModel")
    batch = frame_batch(frames(2, 30, 12, 0), frames(2, 30, 8, 1), [30, 5], 30)
    with pytest.raises(ConfigError, match="feature_sizes"):
        model(batch)
    with pytest.raises(ConfigError, match="frame_features"):
        small_model("VideoLevelMlpModel")(batch_for("ChunkMeanModel"))


# Shapes -------------------------------------------------------------------

@pytest.mark.parametrize("name", TRAINED_MODELS)
def test_every_model_returns_both_embeddings(name):
    model = small_model(name)
    out = model(batch_for(name), return_attention=True)
    assert out["video"].shape == (3, 6) and out["audio"].shape == (3, 6)
    assert out["video"].dtype == tf.float32
    # Deep CCA needs full-rank, unnormalized embeddings: a linear output.
    norms = np.linalg.norm(out["video"], axis=-1)
    assert not np.allclose(norms, 1.0)
    if name in CHUNK_MODELS:
        assert set(out) == {"video", "audio", "video_attention",
                            "audio_attention"}
    else:
        assert set(out) == {"video", "audio"}


@pytest.mark.parametrize("name", CHUNK_MODELS)
def test_attention_covers_only_valid_chunks_when_t_not_divisible(name):
    model = small_model(name)
    lengths = [100, 61, 30]  # T=100, chunk 30: 4 chunks, the last 10 frames
    batch = frame_batch(frames(3, 100, 16, 2), frames(3, 100, 8, 3), lengths,
                        100)
    out = model(batch, return_attention=True)
    valid = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]], bool)
    for key in ("video_attention", "audio_attention"):
        weights = out[key].numpy()
        assert weights.shape == (3, 4)
        np.testing.assert_array_equal(weights[~valid], 0.0)
        assert (weights[valid] > 0).all()
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    if name == "ChunkMeanModel":
        np.testing.assert_allclose(out["video_attention"][1], [1 / 3] * 3 + [0],
                                   atol=1e-7)


# Masking ------------------------------------------------------------------

@pytest.mark.parametrize("name,variant", [(n, "gru_additive_learned")
                                          for n in FRAME_MODELS]
                         + [("ChunkAttentionModel", v) for v in VARIANTS
                            if v != "gru_additive_learned"])
def test_padding_invariance(name, variant):
    """120 real frames padded to 300 or to 150: the same embedding."""
    model = small_model(name, **VARIANTS[variant])
    video, audio = frames(2, 120, 16, 4), frames(2, 120, 8, 5)
    lengths = [120, 47]
    long = model(frame_batch(video, audio, lengths, 300, junk=3.0))
    short = model(frame_batch(video, audio, lengths, 150))
    assert_same_embeddings(long, short)
    # num_frames alone (no mask key) gives the same result.
    batch = frame_batch(video, audio, lengths, 150)
    del batch["mask"]
    assert_same_embeddings(model(batch), short)


@pytest.mark.parametrize("name", CHUNK_MODELS)
@pytest.mark.parametrize("length", [7, 60])
def test_short_and_whole_chunk_videos_equal_their_unpadded_selves(name, length):
    """Shorter than one chunk, and exactly 2 chunks of 30 frames."""
    model = small_model(name)
    video, audio = frames(1, length, 16, 6), frames(1, length, 8, 7)
    padded = model(frame_batch(video, audio, [length], 300, junk=-2.0),
                   return_attention=True)
    unpadded = model({"video": tf.constant(video), "audio": tf.constant(audio)},
                     return_attention=True)
    assert_same_embeddings(padded, unpadded)
    num_chunks = -(-length // 30)
    weights = padded["video_attention"].numpy()[0]
    np.testing.assert_array_equal(weights[num_chunks:], 0.0)
    np.testing.assert_allclose(weights[:num_chunks],
                               unpadded["video_attention"][0], atol=1e-6)


def test_reversing_frames_changes_chunk_attention_but_not_mean_pool():
    video, audio = frames(2, 120, 16, 8), frames(2, 120, 8, 9)
    lengths = [120, 75]
    reversed_video = video.copy()
    reversed_audio = audio.copy()
    for b, n in enumerate(lengths):
        reversed_video[b, :n] = video[b, :n][::-1]
        reversed_audio[b, :n] = audio[b, :n][::-1]
    forward = frame_batch(video, audio, lengths, 150)
    backward = frame_batch(reversed_video, reversed_audio, lengths, 150)
    attention = small_model("ChunkAttentionModel")
    for key in ("video", "audio"):
        change = np.abs(attention(forward)[key] - attention(backward)[key])
        assert change.max() > 1e-3
    mean_pool = small_model("MeanPoolModel")
    assert_same_embeddings(mean_pool(forward), mean_pool(backward))


def test_slot_pooling_knows_which_chunk_said_what():
    """Swapping two whole chunks: a mean of (summary + learned position)
    cannot see it; slots, one per position, can."""
    video, audio = frames(2, 90, 16, 10), frames(2, 90, 8, 11)

    def swap(x):
        return np.concatenate([x[:, 30:60], x[:, :30], x[:, 60:]], axis=1)
    batch = frame_batch(video, audio, [90, 90], 90)
    swapped = frame_batch(swap(video), swap(audio), [90, 90], 90)
    added = small_model("ChunkMeanModel")
    added(batch)
    for weight in added.weights:
        if "positions" in weight.path:
            # Learned positions start near 0; make them matter.
            weight.assign(tf.random.normal(weight.shape, seed=1))
    assert_same_embeddings(added(batch), added(swapped), atol=1e-4)
    slots = small_model("ChunkMeanModel", position_encoding="slot",
                        embedding_dim=20)
    for key in ("video", "audio"):
        change = np.abs(slots(batch)[key] - slots(swapped)[key])
        assert change.max() > 1e-3


def test_slot_embedding_size_must_split_into_equal_slots():
    with pytest.raises(ValueError, match="embedding_dim=16 must be a "
                                         "multiple of the 10 chunk positions"):
        small_model("ChunkAttentionModel", position_encoding="slot",
                    embedding_dim=16)


# Saving -------------------------------------------------------------------

@pytest.mark.parametrize("name,variant", [(n, "gru_additive_learned")
                                          for n in TRAINED_MODELS]
                         + [("ChunkAttentionModel", v) for v in VARIANTS
                            if v != "gru_additive_learned"])
def test_model_round_trips_through_keras_file(name, variant, tmp_path):
    model = small_model(name, **VARIANTS[variant])
    batch = batch_for(name)
    before = model(batch, return_attention=True)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    after = loaded(batch, return_attention=True)
    assert set(after) == set(before)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    # The flat config rebuilds the same model through its typed config
    # (what train_dir/model_flags.json relies on).
    rebuilt = type(model).from_config(model.get_config())
    assert rebuilt.get_config() == model.get_config()
    assert rebuilt.config == model.config


def test_cross_modal_model_of_tower_objects_round_trips(tmp_path):
    model = models.CrossModalModel(
        ChunkAttentionTower(16, embedding_dim=6, chunk_size=4, rnn_units=3,
                            attention="multihead", attention_units=4,
                            num_heads=2, max_frames=12),
        MeanPoolTower(8, embedding_dim=6, hidden_units=4, num_hidden_layers=0))
    batch = frame_batch(frames(2, 12, 16, 10), frames(2, 12, 8, 11), [12, 5],
                        12)
    before = model(batch, return_attention=True)
    assert "video_attention" in before and "audio_attention" not in before
    path = str(tmp_path / "towers.keras")
    model.save(path)
    after = keras.models.load_model(path)(batch, return_attention=True)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


# Gradients ----------------------------------------------------------------

@pytest.mark.parametrize("name,variant", [(n, "gru_additive_learned")
                                          for n in TRAINED_MODELS]
                         + [("ChunkAttentionModel",
                             "bilstm_multihead_sinusoidal"),
                            ("ChunkMeanModel", "gru_input_projection")])
def test_gradients_reach_every_trainable_weight(name, variant):
    frames_kwarg = {"max_frames": 60} if name in CHUNK_MODELS else {}
    model = small_model(name, **VARIANTS[variant], **frames_kwarg)
    if name == "VideoLevelMlpModel":
        batch = video_batch(num_videos=4)
    else:  # Full-length videos so every learned position row is used.
        batch = frame_batch(frames(4, 60, 16, 12), frames(4, 60, 8, 13),
                            [60, 60, 45, 12], 60)
    with tf.GradientTape() as tape:
        out = model(batch, training=True)
        loss = (tf.reduce_sum(tf.sin(out["video"]) * out["audio"])
                + tf.reduce_sum(tf.square(out["video"])))
    variables = model.trainable_variables
    assert variables
    grads = tape.gradient(loss, variables)
    for variable, grad in zip(variables, grads):
        assert grad is not None, variable.path
        # Real gradients here are >= ~1e-5; a weight the math cannot move
        # (e.g. a key bias that the softmax cancels) shows up as round-off.
        assert np.abs(tf.convert_to_tensor(grad)).max() > 1e-7, variable.path


@pytest.mark.parametrize("name,variant", [(n, "gru_additive_learned")
                                          for n in TRAINED_MODELS]
                         + [("ChunkAttentionModel", "lstm_additive_none")])
def test_tf_checkpoint_restores_every_weight(name, variant, tmp_path):
    """tf.train.Checkpoint must see every sub-layer (no hidden lists)."""
    batch = batch_for(name)
    model = small_model(name, **VARIANTS[variant])
    before = model(batch)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    saved = [k for k, _ in tf.train.list_variables(path)
             if k.startswith("model/")]
    assert len(saved) == len(model.weights)
    fresh = small_model(name, **VARIANTS[variant])
    fresh(batch)
    tf.train.Checkpoint(model=fresh).restore(path).assert_consumed()
    assert_same_embeddings(fresh(batch), before, atol=0.0)
