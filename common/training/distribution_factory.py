"""Picks the distribution back-end named by ``--strategy`` (``runtime.strategy``).

Kept apart from :mod:`common.training.distribution` (the interface), which the
back-ends subclass: the factory imports them, they import the interface.
"""
import os

from common.config.schema import STRATEGIES
from common.training.distribution import SingleProcess

# Set by horovodrun (gloo and MPI launchers) and by mpirun (Open MPI) in every rank.
_LAUNCHER_RANK_VARIABLES = ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


def launched_by_horovodrun():
    """True in a process started by ``horovodrun`` / ``mpirun``."""
    return any(name in os.environ for name in _LAUNCHER_RANK_VARIABLES)


def make_distribution(strategy="auto", fp16_allreduce=False):
    """Builds the distribution back-end named by ``--strategy``.

    Args:
        strategy: ``auto`` (Horovod when launched by ``horovodrun``, else a single
            process), ``default`` (single process), ``horovod``, ``mirrored``
            (all local GPUs) or ``multi_worker`` (cluster from ``TF_CONFIG``).
        fp16_allreduce: Horovod only: send gradients as float16.

    Returns:
        An object with the :class:`SingleProcess` interface.

    Raises:
        ValueError: unknown ``strategy``, or a setting that cannot work (see message).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown --strategy {strategy!r}; use one of {', '.join(STRATEGIES)}.")
    if strategy == "auto":
        strategy = "horovod" if launched_by_horovodrun() else "default"
    if fp16_allreduce and strategy != "horovod":
        raise ValueError("--fp16_allreduce compresses Horovod's allreduce; run under horovodrun "
                         "(or --strategy horovod), or drop the flag.")
    if strategy == "default":
        return SingleProcess()
    if strategy == "horovod":
        from common.training.horovod_distribution import HorovodDistribution

        return HorovodDistribution(fp16_allreduce=fp16_allreduce)
    if launched_by_horovodrun():
        raise ValueError(f"--strategy {strategy} was launched by horovodrun/mpirun, which starts "
                         "one process per GPU; start it with plain python (one process per "
                         "machine) or use --strategy horovod.")
    from common.training import tf_distribute

    return tf_distribute.mirrored() if strategy == "mirrored" else tf_distribute.multi_worker()
