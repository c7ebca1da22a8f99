"""Loads weights for evaluation, export or fine-tuning from any checkpoint we accept:

* a training checkpoint written by ``main.py`` (object-based ``tf.train.Checkpoint``
  with ``model`` and ``ema`` entries, see :mod:`common.training.checkpoints`);
* an official google/automl TF1-style checkpoint (see :mod:`common.checkpoints.official`).
"""
import tensorflow as tf
from absl import logging

from common.checkpoints.official import (
    CheckpointError,
    ImportReport,
    _read_checkpoint,
    load_official_checkpoint,
    resolve_checkpoint_prefix,
)

_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_EMA_MARKER = "ema/num_updates/.ATTRIBUTES/VARIABLE_VALUE"


def is_training_checkpoint(prefix):
    """True for an object-based checkpoint written by our training runtime."""
    _, shapes = _read_checkpoint(prefix)
    return _OBJECT_GRAPH_KEY in shapes and any(k.startswith("model/") for k in shapes)


def restore_for_inference(model, path, use_ema=True, skip_mismatch=False):
    """Puts the weights of checkpoint ``path`` into ``model`` (EMA weights by default).

    Args:
        model: the network (built, variables created).
        path: a model directory, a checkpoint prefix, or an official checkpoint.
        use_ema: use the moving averages when the checkpoint has them.
        skip_mismatch: for official checkpoints, leave layers with other shapes
            (e.g. another number of classes) initialized instead of failing.

    Returns:
        A description string of what was loaded (also logged).

    Raises:
        CheckpointError: missing, corrupted or foreign checkpoints.
    """
    from common.training.ema import ExponentialMovingAverage

    prefix = resolve_checkpoint_prefix(path)
    if not is_training_checkpoint(prefix):
        report = load_official_checkpoint(model, prefix, use_ema=use_ema,
                                          skip_mismatch=skip_mismatch)
        return report.summary()
    _, shapes = _read_checkpoint(prefix)
    ema = ExponentialMovingAverage(model.weights, decay=0.0)
    checkpoint = tf.train.Checkpoint(model=model, ema=ema)
    status = checkpoint.restore(prefix).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise CheckpointError(
            f"Training checkpoint {prefix!r} does not fit this model ({str(error)[:300]}). "
            "Build the model with the config saved next to the checkpoint (config.yaml)."
        ) from None
    has_ema = _EMA_MARKER in shapes
    if use_ema and has_ema:
        ema.copy_to_model()
    message = (f"Restored {len(model.weights)} variables from training checkpoint {prefix} "
               f"({'EMA' if use_ema and has_ema else 'raw'} weights).")
    logging.info("%s", message)
    return message


__all__ = ["CheckpointError", "ImportReport", "is_training_checkpoint", "restore_for_inference"]
