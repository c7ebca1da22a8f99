"""Bit-identical training runs for one seed (``runtime.deterministic`` / ``--deterministic``).

Placeholder text replaced below once measured.
"""
import tensorflow as tf
from absl import logging


def configure_determinism(enabled):
    """Turns on TensorFlow's deterministic kernels when ``enabled`` (call before building)."""
    if not enabled:
        return
    tf.config.experimental.enable_op_determinism()
    logging.info("Deterministic mode: TensorFlow op determinism on.")
