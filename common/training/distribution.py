"""The cross-replica hook of the train step: where gradients are averaged.

Models and data never import a distribution library; the runtime passes a
``Distribution`` that says how many replicas there are, which one this
process is, and how to reduce tensors. ``SingleProcess`` is the identity;
multi-process back-ends implement the same methods:

* :class:`~common.training.horovod_distribution.HorovodDistribution`
  (``horovodrun``; one process per GPU),
* :class:`~common.training.tf_distribute.TFDistribution` (``tf.distribute``
  mirrored / multi-worker strategies).

:func:`common.training.distribution_factory.make_distribution` picks one from
the ``--strategy`` flag.
"""
import contextlib
import pickle

import numpy as np


class SingleProcess:
    """One process, one replica: every reduction is the identity."""

    size = 1
    rank = 0
    local_rank = 0

    @property
    def is_chief(self):
        """Only the chief writes checkpoints, logs and summaries."""
        return self.rank == 0

    @property
    def num_shards(self):
        """How many disjoint parts the input files are split into."""
        return self.size

    @property
    def shard_index(self):
        """Which part of the input files this process reads."""
        return self.rank

    @property
    def syncs_batch_norm(self):
        """Whether ``BatchNormalization(synchronized=True)`` averages over all replicas."""
        return True

    def scope(self):
        """Context in which the model, optimizer, EMA and train step are built."""
        return contextlib.nullcontext()

    def distribute_dataset(self, dataset):
        """The training dataset as the train step's iterator expects it."""
        return dataset

    def run(self, fn, *args):
        """Runs the per-replica part of a step; returns its (replica-averaged) outputs."""
        return fn(*args)

    def prepare_optimizer(self, optimizer):
        """Adapts a freshly built optimizer to this back-end (identity here)."""
        return optimizer

    def allreduce_gradients(self, gradients):
        """Averages gradients across replicas (called once per optimizer step)."""
        return gradients

    def allreduce_mean(self, value):
        """Averages a tensor across replicas (metrics, loss normalizers)."""
        return value

    def allgather(self, value):
        """Concatenates tensors from every replica along axis 0."""
        return value

    def allgather_object(self, obj):
        """A list with every process's picklable ``obj``, in rank order."""
        if self.num_shards == 1:
            return [obj]
        data = pickle.dumps(obj)
        # Sent as int64 words: every back-end gathers int64 (not all gather uint8).
        words = np.frombuffer(data + b"\0" * (-len(data) % 8), dtype=np.int64)
        lengths = np.asarray(self.allgather(np.asarray([len(data)], np.int64))).tolist()
        gathered = np.asarray(self.allgather(words)).tobytes()
        objects, start = [], 0
        for length in lengths:
            objects.append(pickle.loads(gathered[start:start + length]))
            start += length + (-length % 8)
        return objects

    def broadcast_variables(self, variables):
        """Copies rank 0's values into ``variables`` on every replica."""
        del variables

    def barrier(self):
        """Waits for every replica."""
