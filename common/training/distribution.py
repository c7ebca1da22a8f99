"""The cross-replica hook of the train step: where gradients are averaged.

Models and data never import a distribution library; the runtime passes a
``Distribution`` that says how many replicas there are, which one this
process is, and how to reduce tensors. ``SingleProcess`` is the identity;
multi-process back-ends (Horovod, tf.distribute) implement the same methods.
"""


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
        return self.size

    @property
    def shard_index(self):
        return self.rank

    def allreduce_gradients(self, gradients):
        """Averages gradients across replicas (called once per optimizer step)."""
        return gradients

    def allreduce_mean(self, value):
        """Averages a tensor across replicas (metrics, loss normalizers)."""
        return value

    def allgather(self, value):
        """Concatenates tensors from every replica along axis 0."""
        return value

    def broadcast_variables(self, variables):
        """Copies rank 0's values into ``variables`` on every replica."""
        del variables

    def barrier(self):
        """Waits for every replica."""
