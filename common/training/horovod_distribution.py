"""Horovod back-end of the train step's cross-replica hook (``horovodrun``).

One process per GPU (or per CPU slot under ``horovodrun --gloo`` on a CPU
machine). Uses only the low-level ``horovod.tensorflow`` API: Horovod's Keras
wrappers and ``DistributedOptimizer`` do not handle Keras 3 variables
(horovod issue 4290).

* Gradients are averaged by :meth:`HorovodDistribution.allreduce_gradients`,
  which the train step calls once per optimizer step, after gradient
  accumulation and outside the XLA-compiled forward/backward.
* Initial and restored variables are broadcast from rank 0.
* Every rank reads its own shard of the files (``num_shards = size``,
  ``shard_index = rank``) and runs the same number of steps.
* When a rank dies, the others fail in their next collective (Gloo reports
  the closed connection), and ``horovodrun`` stops with a non-zero exit code.
"""
import keras
import tensorflow as tf
from absl import logging

from common.training.distribution import SingleProcess


def _import_horovod():
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        raise ImportError(
            "--strategy horovod needs Horovod built against this TensorFlow: run "
            "`scripts/install_horovod.sh <your venv>/bin/python` (cmake, g++ and "
            f"libfarmhash-dev are installed if missing). Import failed with: {error}") from error
    return hvd


class HorovodDistribution(SingleProcess):
    """Horovod allreduce / broadcast / allgather behind the train step's hook.

    Args:
        fp16_allreduce: compress gradients to float16 for the allreduce
            (halves the traffic; the average is cast back to the gradient dtype).
    """

    def __init__(self, fp16_allreduce=False):
        self.hvd = hvd = _import_horovod()
        hvd.init()
        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        if gpus:
            if hvd.local_rank() >= len(gpus):
                raise ValueError(
                    f"Horovod local rank {hvd.local_rank()} has no GPU: this machine shows "
                    f"{len(gpus)} GPU(s). Start at most {len(gpus)} processes per host "
                    "(horovodrun -np N -H host:slots).")
            tf.config.set_visible_devices(gpus[hvd.local_rank()], "GPU")
        self.compression = hvd.Compression.fp16 if fp16_allreduce else hvd.Compression.none
        logging.info("Horovod rank %d of %d (local rank %d)%s", hvd.rank(), hvd.size(),
                     hvd.local_rank(), ", fp16 allreduce" if fp16_allreduce else "")

    @property
    def size(self):
        return self.hvd.size()

    @property
    def rank(self):
        return self.hvd.rank()

    @property
    def local_rank(self):
        return self.hvd.local_rank()

    @property
    def syncs_batch_norm(self):
        """False with several ranks: Keras 3 synchronizes batch norm only across
        tf.distribute replicas, and ``hvd.SyncBatchNormalization`` subclasses the
        Keras 2 layer (it fails on Keras 3 with "Unrecognized keyword arguments
        ... fused")."""
        return self.size == 1

    def allreduce_gradients(self, gradients):
        """Averages the accumulated gradients of all ranks, in one fused group."""
        gradients = list(gradients)
        if self.size == 1:
            return gradients
        return self.hvd.grouped_allreduce(gradients, op=self.hvd.Average,
                                          compression=self.compression)

    def allreduce_mean(self, value):
        if self.size == 1:
            return value
        return self.hvd.allreduce(tf.convert_to_tensor(value), op=self.hvd.Average)

    def allgather(self, value):
        """Concatenation over ranks along axis 0 (first dimensions may differ)."""
        if self.size == 1:
            return value
        return self.hvd.allgather(tf.convert_to_tensor(value))

    def broadcast_variables(self, variables):
        """Copies rank 0's values into Keras variables and ``tf.Variable`` s alike.

        The values of each dtype travel packed into one flat tensor: one broadcast
        per dtype. (``hvd.broadcast_variables`` traces a ``tf.function`` with one
        broadcast per variable for every new list of variables: about 8 s per 700
        variables on a CPU, paid at start-up and again at the first evaluation.)
        """
        if self.size == 1:
            return
        tf_variables = [v.value if isinstance(v, keras.Variable) else v for v in variables]
        by_dtype = {}
        for variable in tf_variables:
            by_dtype.setdefault(variable.dtype, []).append(variable)
        for dtype, group in by_dtype.items():  # the same order on every rank
            packed = tf.concat([tf.reshape(v, [-1]) for v in group], axis=0)
            packed = self.hvd.broadcast(packed, root_rank=0,
                                        name=f"broadcast_variables.{dtype.name}")
            sizes = [v.shape.num_elements() for v in group]
            for variable, value in zip(group, tf.split(packed, sizes)):
                variable.assign(tf.reshape(value, variable.shape))

    def barrier(self):
        # horovod.tensorflow 0.28 has no barrier(); a tiny allreduce is one.
        if self.size > 1:
            self.hvd.allreduce(tf.zeros([]), op=self.hvd.Sum, name="barrier").numpy()
