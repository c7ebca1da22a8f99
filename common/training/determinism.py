"""Bit-identical training runs for one seed (``runtime.deterministic`` / ``--deterministic``).

Two sources of run-to-run differences on CPU, both switched off here:

* kernels with non-deterministic reductions (TensorFlow's op determinism);
* Grappler, TensorFlow's graph optimizer: it rewrites the train step's graph
  differently from one process to the next (measured: every variable equal
  after 20 steps with it off, ~1 ulp apart after one step with it on, even with
  op determinism and one thread), so the same sums are computed in another
  order.

The input pipeline is already reproducible for a seed (see
:mod:`dataset.input_utils`). The cost is in README "Resuming and failures".
"""
import tensorflow as tf
from absl import logging


def configure_determinism(enabled):
    """Makes training bit-reproducible when ``enabled`` (call before anything is traced)."""
    if not enabled:
        return
    tf.config.experimental.enable_op_determinism()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        # One op at a time: independent stateful ops (a batch-norm statistic's update
        # and the EMA's read of it) then run in one fixed order.
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        logging.warning("Deterministic mode: TensorFlow was already running, so inter-op "
                        "threads stay as they are; runs may differ in the last bits.")
    logging.info("Deterministic mode: op determinism on, graph optimizer (Grappler) off, "
                 "one inter-op thread.")
