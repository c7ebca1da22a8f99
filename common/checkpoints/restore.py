"""Loads weights for evaluation, export or fine-tuning from any checkpoint we accept:

* a training checkpoint written by ``main.py`` or by the ``import_checkpoint``
  tools (object-based ``tf.train.Checkpoint`` with ``model`` and ``ema``
  entries, see :mod:`common.training.checkpoints` and
  :mod:`common.checkpoints.convert`);
* an official google/automl TF1-style checkpoint (see :mod:`common.checkpoints.official`).
"""
import dataclasses

import numpy as np
import tensorflow as tf
from absl import logging

from common.checkpoints.official import (
    CheckpointError,
    ImportReport,
    _read_checkpoint,
    load_official_checkpoint,
    resolve_checkpoint_prefix,
)
from common.training import checkpoints as layout



@dataclasses.dataclass
class RestoreResult:
    """What :func:`restore_with_report` loaded.

    Attributes:
        message: one human-readable line (also logged).
        loaded: how many model variables got checkpoint values.
        skipped: paths of model variables left at their initial values because
            their shape differs (only with ``skip_mismatch``).
        missing: official names absent from an official checkpoint (e.g. the
            BiFPN and heads when a backbone-only checkpoint goes into a detector).
    """

    message: str
    loaded: int
    skipped: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)


def is_training_checkpoint(prefix):
    """True for an object-based checkpoint written by our training runtime."""
    _, shapes = _read_checkpoint(prefix)
    return layout.OBJECT_GRAPH_KEY in shapes and (
        layout.holds_model_weights(shapes)
        or any(k.startswith(layout.MODEL_KEY_PREFIX) for k in shapes))


def restore_for_inference(model, path, use_ema=True, skip_mismatch=False):
    """Puts the weights of checkpoint ``path`` into ``model`` (EMA weights by default).

    Args:
        model: the network (built, variables created).
        path: a model directory, a checkpoint prefix, or an official checkpoint.
        use_ema: use the moving averages when the checkpoint has them.
        skip_mismatch: leave layers with other shapes (e.g. another number of
            classes) initialized instead of failing.

    Returns:
        A description string of what was loaded (also logged).

    Raises:
        CheckpointError: missing, corrupted or foreign checkpoints.
    """
    return restore_with_report(model, path, use_ema, skip_mismatch).message


def restore_with_report(model, path, use_ema=True, skip_mismatch=False):
    """Like :func:`restore_for_inference`, returning a :class:`RestoreResult` with counts."""
    prefix = resolve_checkpoint_prefix(path)
    if not is_training_checkpoint(prefix):
        report = load_official_checkpoint(model, prefix, use_ema=use_ema,
                                          skip_mismatch=skip_mismatch)
        return RestoreResult(report.summary(), len(report.loaded),
                             [name for name, *_ in report.skipped_shape], list(report.missing))
    return _restore_training_checkpoint(model, prefix, use_ema, skip_mismatch)


def _restore_training_checkpoint(model, prefix, use_ema, skip_mismatch):
    from common.training.ema import ExponentialMovingAverage

    reader, shapes = _read_checkpoint(prefix)
    has_ema = layout.EMA_NUM_UPDATES_KEY in shapes
    ema = ExponentialMovingAverage(model.weights, decay=0.0)
    averaged = ema.averaged_variables  # the float weights, in the order of the saved shadows
    mismatches = _shadow_shape_mismatches(averaged, shapes) if has_ema else []
    if mismatches:
        return _restore_shadows_skipping(averaged, reader, shapes, prefix, mismatches, use_ema,
                                         skip_mismatch)
    if layout.holds_model_weights(shapes):
        checkpoint = layout.training_checkpoint(model, ema)
    elif use_ema and has_ema:
        # Written before every model variable was saved: the EMA shadows hold them all.
        checkpoint = tf.train.Checkpoint(**{layout.MODEL: model, layout.EMA: ema})
    else:
        raise CheckpointError(
            f"Training checkpoint {prefix!r} was written before checkpoints held every model "
            "variable: only its moving-average (EMA) weights are complete; load those "
            "(eval.use_ema=true).")
    try:
        status = checkpoint.restore(prefix).expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as error:
        raise CheckpointError(
            f"Training checkpoint {prefix!r} does not fit this model ({str(error)[:300]}). "
            "Build the model with the config saved next to the checkpoint (config.yaml)."
        ) from None
    if use_ema and has_ema:
        ema.copy_to_model()
    message = (f"Restored {len(model.weights)} variables from training checkpoint {prefix} "
               f"({'EMA' if use_ema and has_ema else 'raw'} weights).")
    logging.info("%s", message)
    return RestoreResult(message, len(model.weights))


def _shadow_shape_mismatches(variables, shapes):
    """Indices whose saved EMA shadow has another shape than ``variables[i]``.

    The shadows are saved in the order of the model's float weights, so for the
    same architecture index ``i`` is variable ``i``; another number of shadows
    means another architecture, which the object-based restore reports.
    """
    saved = [shapes.get(layout.ema_shadow_key(i)) for i in range(len(variables))]
    if any(s is None for s in saved) or layout.ema_shadow_key(len(variables)) in shapes:
        return []
    return [i for i, (v, s) in enumerate(zip(variables, saved)) if tuple(v.shape) != tuple(s)]


def _restore_shadows_skipping(variables, reader, shapes, prefix, mismatches, use_ema,
                              skip_mismatch):
    shown = "; ".join(f"{variables[i].path}: model {tuple(variables[i].shape)} vs checkpoint "
                      f"{tuple(shapes[layout.ema_shadow_key(i)])}"
                      for i in mismatches[:5])
    if not skip_mismatch:
        raise CheckpointError(
            f"{len(mismatches)} variables of training checkpoint {prefix!r} have other shapes "
            f"than the model ({shown}). If the number of classes differs, pass skip_mismatch "
            "(main.py --init_checkpoint does) so those layers are re-initialized.")
    if not use_ema:
        raise CheckpointError(
            f"Training checkpoint {prefix!r} has other shapes than the model ({shown}); "
            "skipping them needs its EMA weights: load with use_ema=True.")
    skipped = set(mismatches)
    try:
        values = [None if i in skipped else reader.get_tensor(layout.ema_shadow_key(i))
                  for i in range(len(variables))]
    except (tf.errors.OpError, ValueError) as error:
        raise CheckpointError(f"Checkpoint {prefix!r} is corrupted ({str(error)[:200]}); "
                              "nothing was loaded.") from None
    for variable, value in zip(variables, values):
        if value is not None:
            variable.assign(np.asarray(value, dtype=variable.dtype))
    names = [variables[i].path for i in mismatches]
    message = (f"Restored {len(variables) - len(names)} variables (EMA weights) from training "
               f"checkpoint {prefix}; skipped {len(names)} with other shapes (re-initialized): "
               + ", ".join(names[:8]) + (" ..." if len(names) > 8 else ""))
    logging.info("%s", message)
    return RestoreResult(message, len(variables) - len(names), names)


__all__ = ["CheckpointError", "ImportReport", "RestoreResult", "is_training_checkpoint",
           "restore_for_inference", "restore_with_report"]
