"""The fused SGD / RMSProp updates equal Keras 3's own updates and shrink the graph."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from common.training.optimizers import FusedRMSprop, FusedSGD, build_optimizer

SHAPES = [(3, 3, 4, 8), (8,), (5, 7)]


def _variables(seed):
    rng = np.random.default_rng(seed)
    return [keras.Variable(rng.normal(size=shape).astype(np.float32)) for shape in SHAPES]


def _gradient_sequence(steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.normal(size=shape).astype(np.float32) for shape in SHAPES] for _ in range(steps)]


def _train(optimizer, steps=6):
    variables = _variables(0)
    optimizer.build(variables)

    @tf.function
    def apply(gradients):
        optimizer.apply(gradients, variables)

    for gradients in _gradient_sequence(steps):
        apply([tf.constant(g) for g in gradients])
    return [np.asarray(v) for v in variables], [np.asarray(v) for v in optimizer.variables]


CASES = {
    "sgd_momentum": (lambda: FusedSGD(0.05, momentum=0.9),
                     lambda: keras.optimizers.SGD(0.05, momentum=0.9)),
    "sgd_nesterov": (lambda: FusedSGD(0.05, momentum=0.9, nesterov=True),
                     lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)),
    "sgd_clipped_schedule": (
        lambda: FusedSGD(keras.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5),
                         momentum=0.9, global_clipnorm=1.0),
        lambda: keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5),
                                     momentum=0.9, global_clipnorm=1.0)),
    "rmsprop_momentum": (lambda: FusedRMSprop(0.01, rho=0.9, momentum=0.9, epsilon=1e-3),
                         lambda: keras.optimizers.RMSprop(0.01, rho=0.9, momentum=0.9,
                                                          epsilon=1e-3)),
    # Falls back to Keras' update (no momentum slot): must still be identical.
    "rmsprop_no_momentum": (lambda: FusedRMSprop(0.01, rho=0.9, momentum=0.0, epsilon=1e-3),
                            lambda: keras.optimizers.RMSprop(0.01, rho=0.9, momentum=0.0,
                                                             epsilon=1e-3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_update_equals_keras_update(case):
    make_fused, make_keras = CASES[case]
    fused_weights, fused_slots = _train(make_fused())
    keras_weights, keras_slots = _train(make_keras())
    moved = max(float(np.abs(w - w0).max()) for w, w0 in zip(keras_weights, _variables(0)))
    assert moved > 1e-3  # the updates are not no-ops
    for fused, reference in zip(fused_weights + fused_slots, keras_weights + keras_slots):
        np.testing.assert_allclose(fused, reference, rtol=2e-6, atol=2e-7)


def test_fused_optimizers_trace_far_fewer_ops():
    def op_count(optimizer):
        variables = _variables(0)
        optimizer.build(variables)
        gradients = [tf.zeros(shape) for shape in SHAPES]
        graph = tf.function(lambda: optimizer.apply(gradients, variables)).get_concrete_function().graph
        return len(graph.get_operations())

    for fused, reference in ((FusedSGD(0.1, momentum=0.9), keras.optimizers.SGD(0.1, momentum=0.9)),
                             (FusedRMSprop(0.1, momentum=0.9), keras.optimizers.RMSprop(0.1, momentum=0.9))):
        fused_ops, reference_ops = op_count(fused), op_count(reference)
        # Per variable: one fused kernel instead of ~8 (SGD) / ~17 (RMSProp) ops.
        assert reference_ops - fused_ops >= 5 * len(SHAPES), (type(fused).__name__, fused_ops,
                                                              reference_ops)


def test_recipes_build_the_fused_optimizers():
    assert type(build_optimizer("sgd", 0.1, momentum=0.9)) is FusedSGD
    assert type(build_optimizer("rmsprop", 0.1, momentum=0.9)) is FusedRMSprop
    scaled = build_optimizer("rmsprop", 0.1, momentum=0.9, mixed_precision=True)
    assert type(scaled.inner_optimizer) is FusedRMSprop

