"""Tests of yt8m_xmodal.layers against numpy float64 references."""

import inspect
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from yt8m_xmodal import config as config_lib
from yt8m_xmodal.features import MAX_FRAMES
from yt8m_xmodal.layers import (ChunkAttentionPooling, ChunkPositionEncoding,
                                ChunkRecurrentEncoder, ChunkSplit,
                                FrameNormalization, InputProjection,
                                MaskedMeanPooling, ProjectionHead, make_rnn)
from yt8m_xmodal.layers.chunking import num_chunk_positions


def _lengths_mask(lengths, num_frames):
    return np.arange(num_frames)[None, :] < np.asarray(lengths)[:, None]


def _round_trip(model, inputs, tmp_path):
    """Saves a model to .keras, loads it back, returns both outputs."""
    before = model(inputs)
    path = str(tmp_path / "layer.keras")
    model.save(path)
    after = keras.models.load_model(path)(inputs)
    return tf.nest.map_structure(np.asarray, (before, after))


# ChunkSplit ---------------------------------------------------------------

def test_chunk_split_matches_numpy_when_t_not_divisible():
    rng = np.random.default_rng(0)
    lengths = [75, 20, 7, 60]  # full, partial, shorter than a chunk, k*L
    frames = rng.normal(size=(4, 75, 3)).astype(np.float32)
    mask = _lengths_mask(lengths, 75)
    chunks, frame_mask, chunk_mask = ChunkSplit(30)(frames, mask=mask)
    assert chunks.shape == (4, 3, 30, 3)
    expected = np.zeros((4, 90, 3), np.float32)
    for b, n in enumerate(lengths):
        expected[b, :n] = frames[b, :n]
    np.testing.assert_array_equal(chunks, expected.reshape(4, 3, 30, 3))
    np.testing.assert_array_equal(
        frame_mask, _lengths_mask(lengths, 90).reshape(4, 3, 30))
    np.testing.assert_array_equal(chunk_mask, [[1, 1, 1], [1, 0, 0],
                                               [1, 0, 0], [1, 1, 0]])


def test_chunk_split_zeroes_junk_past_num_frames_and_unknown_length():
    frames = np.full((1, 10, 2), 7.0, np.float32)
    split = ChunkSplit(4)
    chunks, _, chunk_mask = tf.function(
        split, input_signature=[tf.TensorSpec([None, None, 2]),
                                tf.TensorSpec([None, None], tf.bool)])(
        frames, _lengths_mask([5], 10))
    np.testing.assert_array_equal(chunks[0, 1, 1:], 0.0)
    assert chunks.shape == (1, 3, 4, 2)
    np.testing.assert_array_equal(chunk_mask, [[True, True, False]])


def test_chunk_split_rejects_bad_chunk_size():
    with pytest.raises(ValueError, match="chunk_size"):
        ChunkSplit(0)


# ChunkRecurrentEncoder -----------------------------------------------------

@pytest.mark.parametrize("rnn_type,size,projection", [
    ("gru", 5, 0), ("lstm", 5, 0), ("bigru", 10, 0), ("bilstm", 10, 0),
    ("gru", 5, 3), ("bilstm", 10, 2)])
def test_chunk_encoder_equals_rnn_on_each_trimmed_chunk(rnn_type, size,
                                                        projection):
    """Masked, batched chunks == the RNN run on each chunk's real frames.

    With an input projection, the RNN runs on the frames times the
    projection's kernel plus its bias, computed in numpy float64.
    """
    rng = np.random.default_rng(1)
    lengths = [12, 5, 8]  # chunk size 4: full; 1 full + 1 partial; 2 full
    frames = rng.normal(size=(3, 12, 6)).astype(np.float32)
    chunks, frame_mask, chunk_mask = ChunkSplit(4)(
        frames, mask=_lengths_mask(lengths, 12))
    encoder = ChunkRecurrentEncoder(5, rnn_type=rnn_type,
                                    input_projection_units=projection)
    summaries = encoder(chunks, mask=frame_mask).numpy()
    assert summaries.shape == (3, 3, size)
    if projection:
        assert encoder.projection.kernel.shape == (6, projection)
        # A non-zero bias, so the reference checks that it is added.
        encoder.projection.bias.assign(rng.normal(size=projection))
        summaries = encoder(chunks, mask=frame_mask).numpy()
        kernel = encoder.projection.kernel.numpy().astype(np.float64)
        bias = encoder.projection.bias.numpy().astype(np.float64)
    for b, n in enumerate(lengths):
        for c in range(3):
            real = frames[b, 4 * c:min(4 * c + 4, n)]
            if len(real) == 0:
                np.testing.assert_array_equal(summaries[b, c], 0.0)
                assert not chunk_mask[b, c]
                continue
            if projection:
                real = (real.astype(np.float64) @ kernel
                        + bias).astype(np.float32)
            alone = encoder.rnn(real[None]).numpy()[0]
            np.testing.assert_allclose(summaries[b, c], alone, atol=1e-6)


def test_chunk_encoder_rejects_a_negative_projection():
    with pytest.raises(ValueError, match="input_projection_units"):
        ChunkRecurrentEncoder(3, input_projection_units=-1)


def test_chunk_encoder_handles_a_batch_with_no_valid_frame():
    encoder = ChunkRecurrentEncoder(3)
    run = tf.function(encoder, input_signature=[
        tf.TensorSpec([None, None, 4, 2]), tf.TensorSpec([None, None, 4],
                                                         tf.bool)])
    out = run(tf.ones([2, 3, 4, 2]), tf.zeros([2, 3, 4], tf.bool))
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out, 0.0)


# ChunkPositionEncoding -----------------------------------------------------

def test_sinusoidal_position_encoding_matches_formula():
    inputs = np.zeros((2, 7, 6), np.float32)
    out = ChunkPositionEncoding("sinusoidal")(inputs).numpy()
    expected = np.zeros((7, 6))
    for p in range(7):
        for i in range(3):
            angle = p / 10000.0 ** (2 * i / 6)
            expected[p, 2 * i] = math.sin(angle)
            expected[p, 2 * i + 1] = math.cos(angle)
    np.testing.assert_allclose(out[0], expected, atol=1e-6)
    np.testing.assert_allclose(out[1], expected, atol=1e-6)


def test_learned_position_encoding_adds_table_rows_and_checks_size():
    layer = ChunkPositionEncoding("learned", max_chunks=4)
    inputs = np.random.default_rng(2).normal(size=(2, 3, 5)).astype(np.float32)
    out = layer(inputs).numpy()
    np.testing.assert_allclose(out, inputs + layer.positions.numpy()[None, :3],
                               atol=1e-7)
    assert np.abs(layer.positions.numpy()).max() > 0
    with pytest.raises(ValueError, match="max_frames"):
        layer(np.zeros((1, 5, 5), np.float32))
    np.testing.assert_array_equal(
        ChunkPositionEncoding("none")(inputs), inputs)


def test_slot_position_encoding_writes_each_chunk_into_its_own_slot():
    layer = ChunkPositionEncoding("slot", max_chunks=4)
    inputs = np.random.default_rng(3).normal(size=(2, 3, 5)).astype(np.float32)
    out = layer(inputs).numpy()
    assert out.shape == (2, 3, 20)
    for b in range(2):
        for c in range(3):
            expected = np.zeros((4, 5), np.float32)
            expected[c] = inputs[b, c]
            np.testing.assert_array_equal(out[b, c], expected.ravel())
    with pytest.raises(ValueError, match="max_frames"):
        layer(np.zeros((1, 5, 5), np.float32))


# ChunkAttentionPooling -----------------------------------------------------

def _numpy_softmax(scores, mask):
    scores = np.where(mask, scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    return weights / weights.sum(axis=-1, keepdims=True)


def test_additive_attention_matches_numpy():
    rng = np.random.default_rng(3)
    inputs = rng.normal(size=(2, 4, 6)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    pool = ChunkAttentionPooling("additive", units=5)
    pooled, weights = pool(inputs, mask=mask, return_attention=True)
    w1, b1 = [v.numpy().astype(np.float64)
              for v in pool.score_hidden.weights]
    v = pool.score.weights[0].numpy().astype(np.float64)[:, 0]
    x = inputs.astype(np.float64)
    expected_w = _numpy_softmax(np.tanh(x @ w1 + b1) @ v, mask)
    np.testing.assert_allclose(weights, expected_w, atol=1e-6)
    np.testing.assert_allclose(pooled, np.einsum("bc,bch->bh", expected_w, x),
                               atol=1e-5)


def test_multihead_attention_matches_numpy():
    rng = np.random.default_rng(4)
    inputs = rng.normal(size=(2, 5, 6)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)
    pool = ChunkAttentionPooling("multihead", units=8, num_heads=2)
    pooled, weights = pool(inputs, mask=mask, return_attention=True)
    x = inputs.astype(np.float64)
    (wk,) = [w.numpy().astype(np.float64) for w in pool.key.weights]
    wv, bv = [w.numpy().astype(np.float64) for w in pool.value.weights]
    wo, bo = [w.numpy().astype(np.float64)
              for w in pool.output_projection.weights]
    query = pool.query.numpy().astype(np.float64)
    keys = (x @ wk).reshape(2, 5, 2, 4)
    values = (x @ wv + bv).reshape(2, 5, 2, 4)
    heads, head_weights = [], []
    for h in range(2):
        w = _numpy_softmax(keys[:, :, h] @ query[h] / 2.0, mask)
        head_weights.append(w)
        heads.append(np.einsum("bc,bck->bk", w, values[:, :, h]))
    expected = np.concatenate(heads, axis=-1) @ wo + bo
    np.testing.assert_allclose(pooled, expected, atol=1e-5)
    np.testing.assert_allclose(weights, np.mean(head_weights, axis=0),
                               atol=1e-6)


@pytest.mark.parametrize("kind", ["additive", "multihead"])
def test_attention_ignores_masked_chunks_entirely(kind):
    rng = np.random.default_rng(5)
    inputs = rng.normal(size=(2, 4, 6)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)
    pool = ChunkAttentionPooling(kind, units=8, num_heads=2)
    pooled, weights = pool(inputs, mask=mask, return_attention=True)
    junk = np.where(mask[..., None], inputs, 1e6).astype(np.float32)
    junk_pooled = pool(junk, mask=mask)
    # Dropping the masked chunks altogether gives the same answer too.
    first = pool(inputs[:1, :2], mask=mask[:1, :2])
    np.testing.assert_array_equal(pooled, junk_pooled)
    np.testing.assert_allclose(pooled[:1], first, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(weights)[~mask], 0.0)
    np.testing.assert_allclose(np.sum(weights, axis=-1), 1.0, atol=1e-6)


def test_attention_rejects_units_not_divisible_by_heads():
    with pytest.raises(ValueError, match="num_heads"):
        ChunkAttentionPooling("multihead", units=10, num_heads=4)


# ProjectionHead, MaskedMeanPooling, FrameNormalization ---------------------

def test_projection_head_matches_numpy_mlp_with_linear_output():
    # Seeded weights: with unlucky ones all 15 outputs can be >= 0 and the
    # linear-output check below would fail for no fault of the layer.
    keras.utils.set_random_seed(6)
    rng = np.random.default_rng(6)
    inputs = rng.normal(size=(5, 4)).astype(np.float32)
    head = ProjectionHead(3, hidden_units=(7, 6))
    out = head(inputs).numpy()
    x = inputs.astype(np.float64)
    for dense in head.hidden:
        w, b = [v.numpy().astype(np.float64) for v in dense.weights]
        x = np.maximum(x @ w + b, 0.0)
    w, b = [v.numpy().astype(np.float64) for v in head.output_dense.weights]
    np.testing.assert_allclose(out, x @ w + b, atol=1e-5)
    assert (out < 0).any(), "the last layer must be linear, not a ReLU"


def test_masked_mean_pooling_matches_numpy_and_handles_empty_rows():
    rng = np.random.default_rng(7)
    inputs = rng.normal(size=(3, 6, 2)).astype(np.float32)
    mask = _lengths_mask([6, 2, 0], 6)
    inputs[1, 2:] = np.nan  # junk past num_frames must not leak
    out = MaskedMeanPooling()(inputs, mask=mask).numpy()
    np.testing.assert_allclose(out[0], inputs[0].astype(np.float64).mean(0),
                               atol=1e-6)
    np.testing.assert_allclose(out[1], inputs[1, :2].astype(np.float64).mean(0),
                               atol=1e-6)
    np.testing.assert_array_equal(out[2], 0.0)


def test_frame_l2_normalization_matches_numpy_and_zeroes_padding():
    rng = np.random.default_rng(8)
    inputs = rng.normal(size=(2, 4, 5)).astype(np.float32)
    mask = _lengths_mask([4, 3], 4)
    out = FrameNormalization("l2")(inputs, mask=mask).numpy()
    x = inputs.astype(np.float64)
    expected = x / np.linalg.norm(x, axis=-1, keepdims=True)
    expected[~mask] = 0.0
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # All-zero frames (YT8M padding) stay finite.
    assert np.isfinite(FrameNormalization("l2")(np.zeros((1, 2, 5)))).all()
    layer_out = FrameNormalization("layer")(inputs, mask=mask).numpy()
    centred = x - x.mean(-1, keepdims=True)
    expected = centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-6)
    expected[~mask] = 0.0
    np.testing.assert_allclose(layer_out, expected, atol=1e-4)
    with pytest.raises(ValueError, match="normalization"):
        FrameNormalization("batch")


def test_make_rnn_rejects_unknown_type():
    with pytest.raises(ValueError, match="rnn_type"):
        make_rnn("transformer", 4)


# InputProjection -----------------------------------------------------------

def test_input_projection_matches_numpy_and_starts_as_the_first_coordinates():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 6))
    layer = InputProjection(3)
    # Unfitted: the first 3 coordinates, so an unfitted model is defined.
    np.testing.assert_allclose(np.asarray(layer(x.astype(np.float32))),
                               x[:, :3], rtol=1e-6)
    mean, projection = rng.normal(size=6), rng.normal(size=(6, 3))
    layer.set_projection(mean, projection)
    np.testing.assert_allclose(np.asarray(layer(x.astype(np.float32))),
                               (x - mean) @ projection, rtol=1e-5, atol=1e-5)
    assert not layer.trainable_weights and len(layer.non_trainable_weights) == 2
    with pytest.raises(ValueError, match="expected a mean of shape"):
        layer.set_projection(np.zeros(5), projection)
    with pytest.raises(ValueError, match="units=7 exceeds the input size 6"):
        InputProjection(7)(x.astype(np.float32))


def test_input_projection_round_trips_through_keras_file(tmp_path):
    rng = np.random.default_rng(5)
    inputs = keras.Input((6,))
    layer = InputProjection(2)
    model = keras.Model(inputs, layer(inputs))
    layer.set_projection(rng.normal(size=6), rng.normal(size=(6, 2)))
    x = rng.normal(size=(4, 6)).astype(np.float32)
    before, after = _round_trip(model, x, tmp_path)
    np.testing.assert_array_equal(before, after)
    assert InputProjection.from_config(layer.get_config()).units == 2


# Defaults ------------------------------------------------------------------

def _defaults(callable_):
    return {name: p.default for name, p in
            inspect.signature(callable_).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_layer_defaults_are_the_recipe():
    """The layers stand alone (they import no config), and their own
    defaults are the shipped recipe's (`ChunkAttentionConfig`)."""
    recipe = config_lib.ChunkAttentionConfig()
    assert _defaults(ChunkSplit) == {"chunk_size": recipe.chunk_size}
    assert _defaults(ChunkRecurrentEncoder) == {
        "units": recipe.rnn_units, "rnn_type": recipe.rnn_type,
        "input_projection_units": recipe.input_projection_units}
    assert _defaults(ChunkPositionEncoding) == {
        "kind": recipe.position_encoding,
        "max_chunks": num_chunk_positions(MAX_FRAMES, recipe.chunk_size)}
    assert _defaults(ChunkAttentionPooling) == {
        "kind": recipe.attention, "units": recipe.attention_units,
        "num_heads": recipe.num_heads}
    head = _defaults(ProjectionHead)
    assert (head["embedding_dim"], head["hidden_units"], head["dropout"]) == (
        recipe.embedding_dim, (recipe.hidden_units,), recipe.dropout)
    assert _defaults(FrameNormalization)["kind"] == recipe.input_norm


# Serialization -------------------------------------------------------------

def test_every_layer_round_trips_through_keras_file(tmp_path):
    """One functional model holding every layer, saved and loaded back."""
    frames = keras.Input((None, 6))
    mask = keras.Input((None,), dtype="bool")
    normalized = FrameNormalization("layer")(frames, mask=mask)
    chunks, frame_mask, chunk_mask = ChunkSplit(4)(normalized, mask=mask)
    summaries = ChunkRecurrentEncoder(5, rnn_type="bilstm",
                                      input_projection_units=3)(
        chunks, mask=frame_mask)
    learned = ChunkPositionEncoding("learned", max_chunks=3)(summaries)
    sinusoid = ChunkPositionEncoding("sinusoidal")(summaries)
    projected = ChunkPositionEncoding("slot", max_chunks=3)(summaries)
    additive, additive_w = ChunkAttentionPooling("additive", units=6)(
        learned, mask=chunk_mask, return_attention=True)
    multihead, multihead_w = ChunkAttentionPooling(
        "multihead", units=8, num_heads=2)(
        sinusoid, mask=chunk_mask, return_attention=True)
    mean = MaskedMeanPooling()(projected, mask=chunk_mask)
    embedding = ProjectionHead(4, hidden_units=(7,), dropout=0.5)(
        keras.layers.Concatenate()([additive, multihead, mean]))
    model = keras.Model([frames, mask], [embedding, additive_w, multihead_w,
                                         chunks, frame_mask, chunk_mask])
    rng = np.random.default_rng(9)
    inputs = [rng.normal(size=(3, 10, 6)).astype(np.float32),
              _lengths_mask([10, 5, 2], 10)]
    before, after = _round_trip(model, inputs, tmp_path)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(b, a)
    assert np.abs(before[0]).max() > 0


@pytest.mark.parametrize("layer", [
    ChunkSplit(7), ChunkRecurrentEncoder(3, rnn_type="bigru",
                                         input_projection_units=4),
    ChunkPositionEncoding("sinusoidal", max_chunks=5),
    ChunkPositionEncoding("slot", max_chunks=5),
    ChunkAttentionPooling("multihead", units=6, num_heads=3),
    ProjectionHead(5, hidden_units=(3, 2), activation="gelu", dropout=0.1),
    MaskedMeanPooling(), FrameNormalization("none", epsilon=1e-3),
    InputProjection(4)])
def test_get_config_returns_init_arguments(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
