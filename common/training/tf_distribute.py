"""``tf.distribute`` back-end of the train step's cross-replica hook.

The built-in alternative to Horovod: ``MirroredStrategy`` (one machine, several
GPUs, or several logical CPU devices in tests) and
``MultiWorkerMirroredStrategy`` (several machines, cluster from ``TF_CONFIG``).

How the one train step runs under a strategy:

* the runner builds the model, optimizer, EMA and :class:`TrainStep` inside
  :meth:`TFDistribution.scope` (variables become mirrored, and Keras optimizers
  bind to the strategy they were created under);
* the training dataset goes through :meth:`distribute_dataset`: every replica
  reads ``per-replica batch`` elements from this worker's pipeline, so batch
  sizes mean the same as under Horovod;
* :meth:`run` executes the per-replica part of the step (forward, backward,
  accumulation, all-reduce, optimizer update) with ``strategy.run`` and
  averages the returned losses; EMA and the NaN check then run once;
* :meth:`allreduce_gradients` averages with the replica context's all-reduce
  (NCCL / collective ops), so clipping and the loss-scale finiteness check see
  the global gradient. Keras 3 optimizers would sum gradients across replicas
  a second time inside ``apply``; :meth:`prepare_optimizer` turns that off.

Batch norm: with ``synchronized=True`` (``--sync_bn``) the statistics are
averaged over all replicas, so N replicas equal one device on the combined
batch; this cannot be combined with XLA (no cross-replica sync inside an
XLA-compiled function). Without it, each replica keeps its own moving
statistics and checkpoints / evaluation use the first replica's.
"""
import json
import os

import keras
import tensorflow as tf
from absl import logging

from common.training.distribution import SingleProcess


class TFDistribution(SingleProcess):
    """Wraps a ``tf.distribute.Strategy`` in the train step's hook interface.

    ``size`` is the number of replicas (for the global batch and learning-rate
    scaling); ``rank`` / ``shard_index`` is this worker's index and
    ``num_shards`` the number of workers (each worker reads its own shard of the
    files and feeds all of its local replicas from it).

    Args:
        strategy: a ``MirroredStrategy`` or ``MultiWorkerMirroredStrategy``.
        worker_index: this process's index in the cluster (0 = chief).
        num_workers: processes in the cluster.
    """

    def __init__(self, strategy, worker_index=0, num_workers=1):
        self.strategy = strategy
        self.worker_index = int(worker_index)
        self.num_workers = int(num_workers)

    @property
    def size(self):
        return self.strategy.num_replicas_in_sync

    @property
    def rank(self):
        return self.worker_index

    @property
    def num_shards(self):
        return self.num_workers

    @property
    def shard_index(self):
        return self.worker_index

    def scope(self):
        """Variables created inside are mirrored on every replica."""
        return self.strategy.scope()

    def distribute_dataset(self, dataset):
        """Per-replica batches from this worker's ``dataset`` (already batched per replica)."""
        return self.strategy.distribute_datasets_from_function(lambda _: dataset)

    def run(self, fn, *args):
        """Runs ``fn`` on every replica; returns its outputs averaged over replicas."""
        per_replica = self.strategy.run(fn, args=args)
        return tf.nest.map_structure(
            lambda value: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None),
            per_replica)

    def prepare_optimizer(self, optimizer):
        """Stops Keras from all-reducing gradients that :meth:`allreduce_gradients` reduced.

        Keras 3's TensorFlow optimizer sums gradients over replicas inside
        ``apply`` (after clipping, so clipping would see per-replica gradients).
        The train step reduces first, so the optimizer's own sum is replaced by
        the identity. ``LossScaleOptimizer`` delegates to its inner optimizer.
        """
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        if not hasattr(inner, "_all_reduce_sum_gradients"):
            raise RuntimeError(
                f"{type(inner).__name__} has no _all_reduce_sum_gradients: this Keras version "
                "changed how optimizers reduce gradients under tf.distribute; use the pinned "
                "keras from requirements.txt or --strategy horovod.")
        inner._all_reduce_sum_gradients = _already_reduced
        return optimizer

    def allreduce_gradients(self, gradients):
        context = tf.distribute.get_replica_context()
        if context is None:
            raise RuntimeError("allreduce_gradients must run inside TFDistribution.run "
                               "(a replica context).")
        return context.all_reduce(tf.distribute.ReduceOp.MEAN, list(gradients))

    def allreduce_mean(self, value):
        """Mean of ``value`` over workers (every worker passes its own value)."""
        if self.num_workers == 1:
            return value
        return self._cross_worker(tf.distribute.ReduceOp.MEAN, value)

    def allgather(self, value):
        """Concatenation over workers along axis 0 (first dimensions may differ)."""
        if self.num_workers == 1:
            return value
        value = tf.convert_to_tensor(value)
        counts = self._cross_worker_gather(tf.shape(value, out_type=tf.int64)[:1])
        longest = tf.reduce_max(counts)
        padding = [[0, longest - tf.shape(value, out_type=tf.int64)[0]]] + \
            [[0, 0]] * (value.shape.rank - 1)
        gathered = self._cross_worker_gather(tf.pad(value, padding))
        pieces = [gathered[i * longest:i * longest + counts[i]] for i in range(self.num_workers)]
        return tf.concat(pieces, axis=0)

    def _cross_worker(self, op, value):
        # Every local replica contributes the worker's value, so the mean over
        # replicas is the mean over workers.
        value = tf.nest.map_structure(tf.convert_to_tensor, value)

        def reduce(v):
            return tf.distribute.get_replica_context().all_reduce(op, v)

        result = self.strategy.run(reduce, args=(value,))
        return tf.nest.map_structure(
            lambda v: self.strategy.experimental_local_results(v)[0], result)

    def _cross_worker_gather(self, value):
        value = tf.convert_to_tensor(value)
        local = self.strategy.num_replicas_in_sync // self.num_workers

        def gather(v):
            return tf.distribute.get_replica_context().all_gather(v, axis=0)

        result = self.strategy.experimental_local_results(
            self.strategy.run(gather, args=(value,)))[0]
        # Replicas are numbered worker by worker: keep the first copy of each worker's value.
        rows = tf.shape(value)[0]
        return tf.concat([result[(w * local) * rows:(w * local + 1) * rows]
                          for w in range(self.num_workers)], axis=0)

    def broadcast_variables(self, variables):
        """Copies worker 0's values into ``variables`` on every worker.

        A no-op on one machine (the strategy keeps mirrored variables identical
        and checkpoints hold the first replica's values); across machines it is
        needed for values each worker updated from its own data (batch-norm
        statistics, their EMA shadows). New variables need no broadcast: the
        multi-worker strategy copies worker 0's initial values.
        """
        if self.num_workers == 1:
            return
        variables = [v.value if isinstance(v, keras.Variable) else v for v in variables]
        # Worker 0 contributes its values, the others zeros: the sum is worker 0's.
        masked = [tf.cast(tf.convert_to_tensor(v), tf.float64) * float(self.worker_index == 0)
                  for v in variables]
        summed = self._cross_worker(tf.distribute.ReduceOp.MEAN, masked)
        for variable, value in zip(variables, summed):
            variable.assign(tf.cast(value * float(self.num_workers), variable.dtype))

    def barrier(self):
        if self.num_workers > 1:
            self._cross_worker(tf.distribute.ReduceOp.SUM, tf.constant(0.0))


def _already_reduced(grads_and_vars):
    return list(grads_and_vars)


def logical_cpu_devices(count):
    """Splits the host CPU into ``count`` logical devices (tests, CPU-only machines).

    Must run before TensorFlow initializes its devices.

    Returns:
        The logical device names, e.g. ``["/cpu:0", "/cpu:1"]``.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if not current or len(current) != count:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    return [f"/cpu:{i}" for i in range(count)]


def mirrored(devices=None):
    """One-machine strategy over ``devices`` (default: all GPUs, else the CPU).

    Returns:
        A :class:`TFDistribution`.
    """
    if devices is None:
        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    strategy = tf.distribute.MirroredStrategy(devices)
    logging.info("MirroredStrategy over %d replica(s): %s", strategy.num_replicas_in_sync,
                 ", ".join(strategy.extended.worker_devices))
    return TFDistribution(strategy)


def multi_worker():
    """Multi-machine strategy whose cluster and task come from ``TF_CONFIG``.

    Raises:
        ValueError: ``TF_CONFIG`` is missing or does not name this task.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "--strategy multi_worker needs TF_CONFIG, e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
            "[\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}' "
            "on the first machine (index 1 on the second).")
    try:
        tf_config = json.loads(raw)
        workers = tf_config["cluster"]["worker"]
        index = int(tf_config["task"]["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is not valid ({error!r}): it needs cluster.worker (a list of "
                         "host:port) and task.index.") from error
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    logging.info("MultiWorkerMirroredStrategy: worker %d of %d, %d replica(s) in sync", index,
                 len(workers), strategy.num_replicas_in_sync)
    return TFDistribution(strategy, worker_index=index, num_workers=len(workers))
