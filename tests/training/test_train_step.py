"""The one train step: gradient accumulation, loss scaling, L2, EMA, NaN detection."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from common.training.ema import ExponentialMovingAverage
from common.training.optimizers import build_optimizer, decayed_variables, l2_loss
from common.training.schedules import WarmupDecaySchedule
from common.training.train_step import TrainStep


class MeanSquaredTask:
    """A task whose loss is a mean over the batch, so k micro-batches = 1 big batch."""

    def compute_loss(self, outputs, labels):
        loss = tf.reduce_mean(tf.square(tf.cast(outputs, tf.float32) - labels))
        return {"total_loss": loss, "mse": loss}


def _small_model():
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(16, activation="swish", name="hidden"),
        keras.layers.Dense(3, dtype="float32", name="out"),
    ])


def _train(accum, mixed, steps=3, xla=False, optimizer="sgd"):
    """``mixed``: False (float32), True (mixed_float16) or a Keras policy name."""
    policy = mixed if isinstance(mixed, str) else ("mixed_float16" if mixed else "float32")
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = _small_model()
    opt = build_optimizer(optimizer, 0.05, momentum=0.9, clip_norm=10.0,
                          mixed_precision=policy == "mixed_float16")
    step = TrainStep(model, MeanSquaredTask(), opt, grad_accum_steps=accum, use_xla=xla,
                     weight_decay=1e-3, weight_decay_exclude=r".*bias.*")
    rng = np.random.RandomState(1)
    x = rng.rand(24, 6).astype("float32")
    y = rng.rand(24, 3).astype("float32")
    iterator = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(24 // accum).repeat())
    for _ in range(steps):
        losses = step.run(iterator)
    return [np.asarray(v) for v in model.weights], losses, opt


@pytest.mark.parametrize("accum", [2, 4])
def test_accumulation_equals_big_batch_fp32(accum):
    big, big_losses, _ = _train(1, mixed=False)
    small, small_losses, opt = _train(accum, mixed=False)
    for a, b in zip(big, small):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(float(big_losses["total_loss"]), float(small_losses["total_loss"]),
                               rtol=1e-5)
    assert int(opt.iterations.numpy()) == 3, "one optimizer step per accumulated step"


def test_accumulation_equals_big_batch_mixed_float16():
    big, _, _ = _train(1, mixed=True)
    small, _, opt = _train(4, mixed=True)
    for a, b in zip(big, small):
        # float16 forward/backward: differences of half-precision rounding only.
        np.testing.assert_allclose(a, b, atol=2e-3)
    reference, _, _ = _train(1, mixed=False)
    assert max(np.abs(a - b).max() for a, b in zip(reference, small)) < 2e-2
    assert isinstance(opt, keras.optimizers.LossScaleOptimizer)


def test_accumulation_equals_big_batch_mixed_bfloat16():
    """bfloat16 compute, float32 variables, no loss scaling: accumulation still equals
    the big batch (bfloat16 rounding only) and stays close to float32 training."""
    big, _, _ = _train(1, mixed="mixed_bfloat16")
    small, losses, opt = _train(4, mixed="mixed_bfloat16")
    assert all(v.dtype == np.float32 for v in small)
    for a, b in zip(big, small):
        np.testing.assert_allclose(a, b, atol=1e-2)
    reference, _, _ = _train(1, mixed=False)
    assert max(np.abs(a - b).max() for a, b in zip(reference, small)) < 5e-2
    assert not isinstance(opt, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(float(losses["total_loss"]))


def test_xla_step_matches_eager_step():
    plain, _, _ = _train(2, mixed=False)
    compiled, _, _ = _train(2, mixed=False, xla=True)
    for a, b in zip(plain, compiled):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_l2_term_and_exclusions():
    model = _small_model()
    decayed, excluded = decayed_variables(model.trainable_variables, r".*bias.*")
    assert sorted(v.path.split("/", 1)[1] for v in decayed) == ["hidden/kernel", "out/kernel"]
    assert sorted(v.path.split("/", 1)[1] for v in excluded) == ["hidden/bias", "out/bias"]
    expected = 0.5 * 1e-3 * sum(float(np.sum(np.square(np.asarray(v)))) for v in decayed)
    np.testing.assert_allclose(float(l2_loss(decayed, 1e-3)), expected, rtol=1e-5)


def test_nonfinite_loss_is_counted():
    model = _small_model()
    step = TrainStep(model, MeanSquaredTask(), build_optimizer("sgd", 0.1))
    x = np.ones((4, 6), "float32")
    y = np.full((4, 3), np.nan, "float32")
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    step.run(iterator)
    step.run(iterator)
    assert int(step.nonfinite_streak.numpy()) == 2


def test_ema_warmup_and_swap():
    model = _small_model()
    ema = ExponentialMovingAverage(model.weights, decay=0.9998)
    kernel = model.get_layer("hidden").kernel
    start = np.asarray(kernel).copy()
    kernel.assign(start + 1.0)
    np.testing.assert_allclose(float(ema.current_decay()), 0.1)  # (1 + 0) / (10 + 0)
    ema.update()
    np.testing.assert_allclose(np.asarray(ema.shadows[0]), start + 0.9, rtol=1e-6)
    with ema.averaged_weights():
        np.testing.assert_allclose(np.asarray(kernel), start + 0.9, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(kernel), start + 1.0)


def test_ema_tracks_batch_norm_statistics():
    bn = keras.layers.BatchNormalization()
    bn.build((None, 3))
    ema = ExponentialMovingAverage(bn.weights, decay=0.5, warmup=False)
    assert {v.path.split("/")[-1] for v in ema._variables} >= {"moving_mean", "moving_variance"}


def test_schedule_warmup_then_cosine():
    schedule = WarmupDecaySchedule(0.08, total_steps=100, warmup_steps=10, warmup_init=0.008)
    np.testing.assert_allclose(float(schedule(0)), 0.008, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(5)), 0.044, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(10)), 0.08, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(55)), 0.04, rtol=1e-5)
    assert float(schedule(100)) < 1e-9


def test_schedule_exponential_staircase():
    schedule = WarmupDecaySchedule(0.016, total_steps=1000, warmup_steps=0,
                                   decay_method="exponential", decay_steps=24, decay_factor=0.97)
    np.testing.assert_allclose(float(schedule(23)), 0.016, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(24)), 0.016 * 0.97, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(50)), 0.016 * 0.97 ** 2, rtol=1e-6)
