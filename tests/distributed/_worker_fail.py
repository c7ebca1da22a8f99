"""A 2-rank job in which rank 1 dies mid-training; started by ``horovodrun``.

    horovodrun -np 2 --gloo python tests/distributed/_worker_fail.py

Rank 1 raises after the first optimizer step while rank 0 keeps training, so
rank 0 is blocked in an allreduce its peer will never join. The test checks
that ``horovodrun`` exits with an error in bounded time instead of hanging.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common.training.distribution_factory import make_distribution  # noqa: E402

import _toy  # noqa: E402


def main():
    distribution = make_distribution("auto")
    model, optimizer, ema, step = _toy.build(_toy.SEED, distribution=distribution)
    distribution.broadcast_variables(list(model.weights) + list(optimizer.variables))
    iterator = iter(_toy.replica_dataset(distribution.rank, distribution.size).repeat())
    step.run(iterator)
    if distribution.rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    for _ in range(10_000):
        step.run(iterator)
    print("rank 0 finished without noticing the dead peer", flush=True)


if __name__ == "__main__":
    sys.exit(main())
