"""The fused TensorFlow batch norm agrees with Keras' own path: outputs, gradients,
moving statistics, variables and names (float32, float16 and bfloat16 inputs)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from common.layers.normalization import BatchNorm, batch_norm


def _pair(shape, dtype="float32", momentum=0.9):
    """The same batch norm twice (same random variables): fused, and Keras' path."""
    layers = []
    rng = np.random.RandomState(0)
    values = None
    for fused in (True, False):
        layer = batch_norm("tpu_batch_normalization", momentum=momentum)
        layer.fused = fused
        layer.build(shape)
        if values is None:
            values = [rng.uniform(0.5, 1.5, v.shape).astype("float32") for v in layer.weights]
        for variable, value in zip(layer.weights, values):
            variable.assign(value)
        layers.append(layer)
    return layers


def _run(layer, x, training):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.linspace(0.5, 1.5, y.shape[-1]))
    grads = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
    return y, grads


@pytest.mark.parametrize("shape", [(2, 8, 6, 16), (1, 1, 1, 8), (3, 5, 5, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_fused_matches_keras_in_float32(shape, training):
    fused, plain = _pair(shape)
    x = tf.constant(np.random.RandomState(1).normal(2.0, 3.0, shape).astype("float32"))
    y_f, g_f = _run(fused, x, training)
    y_p, g_p = _run(plain, x, training)
    np.testing.assert_allclose(y_f.numpy(), y_p.numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(g_f, g_p):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    for a, b in zip(fused.weights, plain.weights):
        assert a.path.split("/")[-1] == b.path.split("/")[-1]
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6, err_msg=a.path)
    if training and shape[0] * shape[1] * shape[2] > 1:
        # The moving statistics moved (towards the biased batch variance, as Keras).
        assert not np.allclose(fused.moving_variance.numpy(), 1.0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_fused_matches_keras_with_mixed_precision(dtype):
    policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(f"mixed_{dtype}")
    try:
        fused, plain = _pair((2, 8, 8, 16))
        x = tf.cast(np.random.RandomState(1).normal(0.5, 2.0, (2, 8, 8, 16)), dtype)
        y_f, g_f = _run(fused, x, True)
        y_p, g_p = _run(plain, x, True)
    finally:
        keras.mixed_precision.set_dtype_policy(policy)
    assert y_f.dtype == y_p.dtype == dtype
    tol = 1e-2 if dtype == "float16" else 5e-2
    np.testing.assert_allclose(tf.cast(y_f, tf.float32), tf.cast(y_p, tf.float32), atol=tol,
                               rtol=tol)
    for a, b in zip(g_f, g_p):
        np.testing.assert_allclose(tf.cast(a, tf.float32), tf.cast(b, tf.float32), atol=tol * 4,
                                   rtol=tol)
    for a, b in zip(fused.weights, plain.weights):
        assert a.dtype == b.dtype == "float32"
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_the_fused_kernel_is_what_runs():
    layer = batch_norm("bn")
    layer.build((1, 4, 4, 8))
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(
        tf.TensorSpec((1, 4, 4, 8))).graph
    ops = {op.type for op in graph.get_operations()}
    assert "FusedBatchNormV3" in ops and "Rsqrt" not in ops
    # Synchronized batch norm averages over replicas: Keras' path.
    synced = batch_norm("bn", synchronized=True)
    synced.build((1, 4, 4, 8))
    graph = tf.function(lambda x: synced(x, training=True)).get_concrete_function(
        tf.TensorSpec((1, 4, 4, 8))).graph
    assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}


def test_round_trips_through_keras_serialization():
    layer = batch_norm("tpu_batch_normalization_3", momentum=0.9)
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(clone, BatchNorm) and clone.name == layer.name and clone.momentum == 0.9
