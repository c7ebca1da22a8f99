"""Trains the toy model with MirroredStrategy over 2 logical CPU devices.

Run as a script (logical devices must be configured before TensorFlow starts):

    python tests/distributed/_worker_mirrored.py OUT_DIR GRAD_ACCUM_STEPS [sync_bn] [xla]

Writes ``OUT_DIR/mirrored.npz`` (weights and EMA shadows) and
``OUT_DIR/mirrored.json`` (replica count, per-replica copies identical or not).
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from common.training import tf_distribute  # noqa: E402

import _toy  # noqa: E402


def main(out_dir, grad_accum_steps, sync_bn=False, use_xla=False):
    distribution = tf_distribute.mirrored(tf_distribute.logical_cpu_devices(2))
    replicas = distribution.size
    model, optimizer, ema, step = _toy.build(_toy.SEED, grad_accum_steps, distribution,
                                             sync_bn=sync_bn, use_xla=use_xla)

    # One worker feeds both replicas in turn: replica r gets every second
    # per-replica batch, so interleaving the replicas' own batches reproduces them.
    datasets = [_toy.replica_dataset(r, replicas, grad_accum_steps) for r in range(replicas)]
    dataset = tf.data.Dataset.choose_from_datasets(datasets,
                                                   tf.data.Dataset.range(replicas).repeat())
    iterator = iter(distribution.distribute_dataset(dataset))
    for _ in range(_toy.STEPS):
        losses = step.run(iterator)
    # Every replica's copy of the weights and of the EMA shadows must be the same.
    copies = [v.value.values for v in model.weights] + [s.values for s in ema.shadows]
    copies_identical = all(
        all(np.array_equal(np.asarray(c), np.asarray(values[0])) for c in values)
        for values in copies)
    _toy.save_npz(os.path.join(out_dir, "mirrored.npz"), _toy.snapshot(model, ema))
    with open(os.path.join(out_dir, "mirrored.json"), "w") as handle:
        json.dump({"replicas": replicas, "copies_identical": copies_identical,
                   "iterations": int(optimizer.iterations.numpy()),
                   "loss": float(losses["total_loss"])}, handle)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sync_bn="sync_bn" in sys.argv[3:],
         use_xla="xla" in sys.argv[3:])
