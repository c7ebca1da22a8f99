"""A tiny regression problem shared by the distributed tests and their worker scripts.

No batch norm (unless synchronized) and a mean loss, so N replicas each averaging gradients over
``batch`` examples equal one replica over ``N * batch`` examples up to float
rounding. The clipping threshold binds on some steps only, so a back-end that
clips before reducing, or sums gradients twice, changes the result.
"""
import contextlib
import math

import keras
import numpy as np
import tensorflow as tf

from common.training.ema import ExponentialMovingAverage
from common.training.optimizers import build_optimizer
from common.training.train_step import TrainStep

FEATURES, OUTPUTS = 5, 3
PER_REPLICA_BATCH = 4
STEPS = 4
CLIP_NORM = 2.0
SEED = 100  # initialization of the reference run and of rank 0


class MeanSquaredTask:
    """Mean squared error: a mean over the batch."""

    def compute_loss(self, outputs, labels):
        loss = tf.reduce_mean(tf.square(tf.cast(outputs, tf.float32) - labels))
        return {"total_loss": loss, "mse": loss}


def build(seed, grad_accum_steps=1, distribution=None, sync_bn=False, use_xla=False):
    """Model, optimizer, EMA and TrainStep, built under the distribution's scope.

    With ``sync_bn`` the hidden layer is followed by a synchronized batch norm:
    N replicas then normalize with the statistics of all ``N * batch`` examples,
    exactly like one replica on the combined batch.

    Returns:
        ``(model, optimizer, ema, train_step)``.
    """
    keras.utils.set_random_seed(seed)
    with distribution.scope() if distribution is not None else contextlib.nullcontext():
        layers = [keras.Input((FEATURES,)), keras.layers.Dense(8, activation="tanh", name="hidden")]
        if sync_bn:
            layers.append(keras.layers.BatchNormalization(synchronized=True, name="bn"))
        model = keras.Sequential(layers + [keras.layers.Dense(OUTPUTS, name="out")])
        optimizer = build_optimizer("sgd", 0.2, momentum=0.9, clip_norm=CLIP_NORM)
        ema = ExponentialMovingAverage(model.weights, decay=0.9)
        step = TrainStep(model, MeanSquaredTask(), optimizer, ema=ema, distribution=distribution,
                         grad_accum_steps=grad_accum_steps, use_xla=use_xla, weight_decay=1e-3,
                         weight_decay_exclude=r".*bias.*")
    return model, optimizer, ema, step


def global_data(num_replicas, grad_accum_steps=1):
    """All examples of all steps: ``(x, y)`` with ``STEPS * global_batch`` rows."""
    rows = STEPS * num_replicas * grad_accum_steps * PER_REPLICA_BATCH
    rng = np.random.RandomState(7)
    x = rng.normal(size=(rows, FEATURES)).astype("float32")
    y = (rng.normal(size=(rows, OUTPUTS)) * 2.0).astype("float32")
    return x, y


def replica_rows(replica, num_replicas, grad_accum_steps=1):
    """Row indices replica ``replica`` consumes, in order: its slice of every global batch."""
    per_step = num_replicas * grad_accum_steps * PER_REPLICA_BATCH
    per_replica = grad_accum_steps * PER_REPLICA_BATCH
    return np.concatenate([
        np.arange(s * per_step + replica * per_replica, s * per_step + (replica + 1) * per_replica)
        for s in range(STEPS)])


def replica_dataset(replica, num_replicas, grad_accum_steps=1):
    """This replica's micro-batches of ``PER_REPLICA_BATCH`` examples."""
    x, y = global_data(num_replicas, grad_accum_steps)
    rows = replica_rows(replica, num_replicas, grad_accum_steps)
    return tf.data.Dataset.from_tensor_slices((x[rows], y[rows])).batch(PER_REPLICA_BATCH)


def reference_weights(num_replicas, grad_accum_steps=1, sync_bn=False):
    """One process on the combined batch (``num_replicas * accum * batch`` examples per step).

    Returns:
        ``{"weights": [...], "ema": [...]}`` as NumPy arrays.
    """
    model, _, ema, step = build(seed=SEED, sync_bn=sync_bn)
    x, y = global_data(num_replicas, grad_accum_steps)
    batch = num_replicas * grad_accum_steps * PER_REPLICA_BATCH
    iterator = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch))
    for _ in range(STEPS):
        step.run(iterator)
    return snapshot(model, ema)


def snapshot(model, ema):
    """Current model weights and EMA shadows as NumPy arrays."""
    return {"weights": [np.asarray(v) for v in model.weights],
            "ema": [np.asarray(s) for s in ema.shadows]}


def save_npz(path, snap):
    arrays = {f"w{i}": w for i, w in enumerate(snap["weights"])}
    arrays.update({f"e{i}": e for i, e in enumerate(snap["ema"])})
    np.savez(path, **arrays)


def load_npz(path):
    data = np.load(path)
    count = len([k for k in data.files if k.startswith("w")])
    return {"weights": [data[f"w{i}"] for i in range(count)],
            "ema": [data[f"e{i}"] for i in range(count)]}


def probe_collectives(distribution, rank):
    """Runs the evaluation collectives with rank-dependent inputs; JSON-ready results."""
    return {
        "gathered_objects": distribution.allgather_object({"rank": rank, "ids": list(range(rank + 1))}),
        "gathered_rows": np.asarray(distribution.allgather(tf.fill([rank + 1, 2], float(rank)))).tolist(),
        "mean": float(distribution.allreduce_mean(tf.constant(float(rank * 10)))),
    }


def assert_collectives(report):
    """What :func:`probe_collectives` must give on every one of 2 processes."""
    assert report["gathered_objects"] == [{"rank": 0, "ids": [0]}, {"rank": 1, "ids": [0, 1]}]
    assert report["gathered_rows"] == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
    assert math.isclose(report["mean"], 5.0, rel_tol=1e-6), report["mean"]
