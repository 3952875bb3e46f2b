"""Global-batch losses under MirroredStrategy equal the one-device values.

tests/conftest.py splits the CPU into 2 logical devices. Each replica gets an
uneven share of the global batch (30 and 18 rows), computes the loss, scales
it with `losses.scale_loss_for_replicas` and differentiates; summing the
replicas' gradients (what the Keras optimizer does) must give the gradient
of the one-device loss on the whole batch.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from yt8m_xmodal import losses

GLOBAL_BATCH = 48
SPLIT = 30  # replica 0 gets rows [0, 30), replica 1 rows [30, 48)
VIDEO_IN, AUDIO_IN, EMBED, CLASSES = 7, 5, 4, 6


@pytest.fixture(scope="module")
def strategy():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) >= 2, "conftest.py must configure 2 logical CPUs"
    return tf.distribute.MirroredStrategy(devices[:2])


def _batch(dtype):
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(GLOBAL_BATCH, 3))
    video = latent @ rng.normal(size=(3, VIDEO_IN)) + rng.normal(
        size=(GLOBAL_BATCH, VIDEO_IN))
    audio = latent @ rng.normal(size=(3, AUDIO_IN)) + rng.normal(
        size=(GLOBAL_BATCH, AUDIO_IN))
    labels = (rng.random((GLOBAL_BATCH, CLASSES)) < 0.3).astype(dtype)
    return video.astype(dtype), audio.astype(dtype), labels


def _towers(dtype):
    video = keras.layers.Dense(EMBED, dtype=dtype, name="video_tower")
    audio = keras.layers.Dense(EMBED, dtype=dtype, name="audio_tower")
    video.build((None, VIDEO_IN))
    audio.build((None, AUDIO_IN))
    return video, audio


def _copy_weights(source, target):
    for s, t in zip(source, target):
        t.set_weights(s.get_weights())


def _variables(towers, loss):
    return (towers[0].trainable_variables + towers[1].trainable_variables
            + loss.trainable_variables)


def _step(towers, loss, video, audio, labels):
    with tf.GradientTape() as tape:
        value = loss(towers[0](video), towers[1](audio), labels)
        scaled = losses.scale_loss_for_replicas(value)
    return value, tape.gradient(scaled, _variables(towers, loss))


def _per_replica(strategy, array):
    parts = [array[:SPLIT], array[SPLIT:]]
    return strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(parts[context.replica_id_in_sync_group]))


CASES = [("dcca", {"top_k": 3}, "float64"),
         ("dcca", {}, "float32"),
         ("cluster_cca", {"beta": 0.3}, "float64"),
         ("soft_cca", {}, "float64"),
         ("infonce", {"temperature": 0.2}, "float64"),
         ("triplet", {}, "float64")]


@pytest.mark.parametrize("name,kwargs,dtype", CASES)
def test_loss_and_gradients_equal_one_device_global_batch(
        strategy, name, kwargs, dtype):
    video, audio, labels = _batch(dtype)
    with strategy.scope():
        towers = _towers(dtype)
        loss = losses.get_loss(name, **kwargs)
    reference_towers = _towers(dtype)
    _copy_weights(towers, reference_towers)
    reference_loss = losses.get_loss(name, **kwargs)

    expected_value, expected_grads = _step(
        reference_towers, reference_loss, tf.constant(video),
        tf.constant(audio), tf.constant(labels))

    @tf.function
    def distributed(v, a, l):
        values, grads = strategy.run(
            lambda *args: _step(towers, loss, *args), args=(v, a, l))
        replica_values = strategy.experimental_local_results(values)
        summed = [strategy.reduce("SUM", g, axis=None) for g in grads]
        return replica_values, summed

    replica_values, grads = distributed(
        _per_replica(strategy, video), _per_replica(strategy, audio),
        _per_replica(strategy, labels))
    tolerance = 1e-10 if dtype == "float64" else 1e-5
    assert len(replica_values) == 2
    for value in replica_values:
        np.testing.assert_allclose(value.numpy(), expected_value.numpy(),
                                   rtol=tolerance)
    assert len(grads) == len(expected_grads) > 0
    for got, want in zip(grads, expected_grads):
        # A float32 variable (InfoNCE's temperature) has a float32 gradient
        # whatever the embeddings' dtype; its sum over replicas rounds
        # differently from the one-device sum.
        tol = tolerance if got.dtype == tf.float64 else max(tolerance, 1e-5)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=tol,
                                   atol=tol)


def test_optimizer_step_equals_one_device_step(strategy):
    """The full recipe: scaled loss, tape, optimizer.apply_gradients in the
    replica context (which sums over replicas), learnable temperature too."""
    dtype = "float32"
    video, audio, labels = _batch(dtype)
    with strategy.scope():
        towers = _towers(dtype)
        dcca = losses.get_loss("dcca")
        infonce = losses.get_loss("infonce")
        optimizer = keras.optimizers.SGD(learning_rate=0.05)
        variables = _variables(towers, infonce)
        optimizer.build(variables)
    reference_towers = _towers(dtype)
    _copy_weights(towers, reference_towers)
    reference_dcca = losses.get_loss("dcca")
    reference_infonce = losses.get_loss("infonce")
    reference_variables = _variables(reference_towers, reference_infonce)
    reference_optimizer = keras.optimizers.SGD(learning_rate=0.05)

    def train_step(towers, dcca, infonce, optimizer, v, a):
        variables = _variables(towers, infonce)
        with tf.GradientTape() as tape:
            ev, ea = towers[0](v), towers[1](a)
            value = dcca(ev, ea) + infonce(ev, ea)
            scaled = losses.scale_loss_for_replicas(value)
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables),
                                      variables))
        return value

    @tf.function
    def distributed(v, a):
        return strategy.run(
            lambda v, a: train_step(towers, dcca, infonce, optimizer, v, a),
            args=(v, a))

    initial = [np.array(v.numpy()) for v in reference_variables]
    distributed(_per_replica(strategy, video), _per_replica(strategy, audio))
    train_step(reference_towers, reference_dcca, reference_infonce,
               reference_optimizer, tf.constant(video), tf.constant(audio))
    for got, want, before in zip(variables, reference_variables, initial):
        want = np.asarray(want.numpy())
        # The step really moved every weight, so the comparison is not vacuous.
        assert np.max(np.abs(want - before)) > 1e-4
        np.testing.assert_allclose(np.asarray(got.numpy()), want,
                                   rtol=1e-5, atol=1e-6)
