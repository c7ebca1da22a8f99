"""One rank of the 2-rank Horovod tests; started by ``horovodrun``.

    horovodrun -np 2 --gloo python tests/distributed/_worker_horovod.py OUT_DIR ACCUM [fp16]

Every rank starts from its own random initialization (so the broadcast from
rank 0 is tested too), trains the toy model on its own slice of each global
batch and writes to ``OUT_DIR``:

* ``rank<r>.npz``: final weights and EMA shadows;
* ``rank<r>.json``: what the collectives returned (size, rank, gathered objects...);
* ``model_rank<r>/``: the model directory it was given; only the chief may
  write there (a checkpoint, DLLogger lines and TensorBoard events).
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from common.training.checkpoints import CheckpointState  # noqa: E402
from common.training.distribution_factory import make_distribution  # noqa: E402
from common.training.logger import MetricLogger  # noqa: E402

import _toy  # noqa: E402


def main(out_dir, grad_accum_steps, fp16_allreduce=False):
    distribution = make_distribution("auto", fp16_allreduce=fp16_allreduce)
    rank, size = distribution.rank, distribution.size
    # Counts executed allreduces (a tf.Variable: the step is a tf.function).
    allreduce_calls = tf.Variable(0, dtype=tf.int64)
    allreduce_gradients = distribution.allreduce_gradients

    def counted_allreduce(gradients):
        allreduce_calls.assign_add(1)
        return allreduce_gradients(gradients)

    distribution.allreduce_gradients = counted_allreduce
    model, optimizer, ema, step = _toy.build(_toy.SEED + rank, grad_accum_steps, distribution)
    distribution.broadcast_variables(list(model.weights) + list(optimizer.variables)
                                     + list(ema.shadows))
    iterator = iter(_toy.replica_dataset(rank, size, grad_accum_steps))
    for _ in range(_toy.STEPS):
        losses = step.run(iterator)
    _toy.save_npz(os.path.join(out_dir, f"rank{rank}.npz"), _toy.snapshot(model, ema))

    model_dir = os.path.join(out_dir, f"model_rank{rank}")
    state = CheckpointState(model_dir, model, optimizer, ema, is_chief=distribution.is_chief)
    state.save()
    logger = MetricLogger(model_dir, distribution.is_chief)
    logger.metadata({"replicas": size})
    logger.log(state.step, {k: float(v) for k, v in losses.items()})
    logger.close()
    distribution.barrier()

    report = {
        "backend": type(distribution).__name__,
        "rank": rank,
        "size": size,
        "is_chief": distribution.is_chief,
        "num_shards": distribution.num_shards,
        "shard_index": distribution.shard_index,
        "iterations": int(optimizer.iterations.numpy()),
        "allreduce_calls": int(allreduce_calls.numpy()),
        **_toy.probe_collectives(distribution, rank),
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), fp16_allreduce=sys.argv[3:] == ["fp16"])
