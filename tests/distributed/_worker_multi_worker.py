"""One worker of the 2-worker ``MultiWorkerMirroredStrategy`` test.

    TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:P0", "127.0.0.1:P1"]},
                "task": {"type": "worker", "index": I}}' \
        python tests/distributed/_worker_multi_worker.py OUT_DIR

Each worker has one CPU replica and reads its own slice of every global batch;
writes ``OUT_DIR/worker<i>.npz`` and ``OUT_DIR/worker<i>.json``.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from common.training.distribution_factory import make_distribution  # noqa: E402

import _toy  # noqa: E402


def main(out_dir):
    distribution = make_distribution("multi_worker")
    rank, workers = distribution.rank, distribution.num_shards
    # Different seeds: the strategy must copy worker 0's initial values.
    model, optimizer, ema, step = _toy.build(_toy.SEED + rank, distribution=distribution)
    dataset = _toy.replica_dataset(distribution.shard_index, workers)
    iterator = iter(distribution.distribute_dataset(dataset))
    for _ in range(_toy.STEPS):
        step.run(iterator)
    _toy.save_npz(os.path.join(out_dir, f"worker{rank}.npz"), _toy.snapshot(model, ema))
    distribution.barrier()
    with distribution.scope():
        local_statistic = tf.Variable([0.0, 0.0])
    local_statistic.assign([rank + 1.0, -(rank + 1.0)])  # e.g. batch-norm moving statistics
    distribution.broadcast_variables([local_statistic])
    report = {
        "broadcast": np.asarray(local_statistic).tolist(),
        "rank": rank,
        "size": distribution.size,
        "is_chief": distribution.is_chief,
        "num_shards": workers,
        "iterations": int(optimizer.iterations.numpy()),
        **_toy.probe_collectives(distribution, rank),
    }
    with open(os.path.join(out_dir, f"worker{rank}.json"), "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main(sys.argv[1])
