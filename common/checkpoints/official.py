"""Loads name-based (TF1-style) checkpoints released by google/automl into our models.

Our weight paths are the official variable names (``efficientnet-b0/blocks_3/conv2d/kernel``,
``fpn_cells/cell_0/fnode1/WSM``, ``class_net/class-predict/bias``,
``efficientnetv2-s/head/dense/kernel``) up to one rename: Keras'
``DepthwiseConv2D`` calls its weight ``kernel`` where the official layer says
``depthwise_kernel``. The released checkpoints store every variable twice, raw
and as ``<name>/ExponentialMovingAverage``; the EMA shadow (batch-norm
statistics included) is preferred by default, as the official evaluation does.
"""
import dataclasses
import os
import re

import numpy as np
import tensorflow as tf
from absl import logging

from common.checkpoints.errors import CheckpointError

EMA_SUFFIX = "/ExponentialMovingAverage"
_RENAMES = ((re.compile(r"(^|/)depthwise_conv2d/kernel$"), r"\1depthwise_conv2d/depthwise_kernel"),)


def official_name(variable_path):
    """Maps one of our Keras variable paths to the official checkpoint name."""
    for pattern, replacement in _RENAMES:
        variable_path = pattern.sub(replacement, variable_path)
    return variable_path


@dataclasses.dataclass
class ImportReport:
    """What a checkpoint import did.

    Attributes:
        checkpoint: the resolved checkpoint prefix.
        loaded: official names assigned to model variables.
        used_ema: how many of them came from the ``/ExponentialMovingAverage`` shadow.
        missing: model variables (official names) absent from the checkpoint.
        unused: checkpoint variables no model variable asked for (EMA shadows,
            optimizer slots and ``global_step`` excluded).
        skipped_shape: ``(name, model_shape, checkpoint_shape)`` left at their
            initial values because of a shape mismatch (only with ``skip_mismatch``).
    """

    checkpoint: str
    loaded: list = dataclasses.field(default_factory=list)
    used_ema: int = 0
    missing: list = dataclasses.field(default_factory=list)
    unused: list = dataclasses.field(default_factory=list)
    skipped_shape: list = dataclasses.field(default_factory=list)

    def summary(self):
        """One line per category, for logs."""
        lines = [
            f"Imported {len(self.loaded)} variables from {self.checkpoint} "
            f"({self.used_ema} from EMA shadows)."
        ]
        if self.skipped_shape:
            lines.append(f"Skipped {len(self.skipped_shape)} with other shapes (re-initialized): "
                         + ", ".join(n for n, *_ in self.skipped_shape[:8])
                         + (" ..." if len(self.skipped_shape) > 8 else ""))
        if self.missing:
            lines.append(f"{len(self.missing)} model variables not in the checkpoint: "
                         + ", ".join(self.missing[:8]) + (" ..." if len(self.missing) > 8 else ""))
        if self.unused:
            lines.append(f"{len(self.unused)} checkpoint variables unused: "
                         + ", ".join(self.unused[:8]) + (" ..." if len(self.unused) > 8 else ""))
        return "\n".join(lines)


def resolve_checkpoint_prefix(path):
    """Returns the checkpoint prefix for a directory (latest checkpoint) or a prefix.

    Raises:
        CheckpointError: if nothing readable is there.
    """
    if os.path.isdir(path):
        prefix = tf.train.latest_checkpoint(path)
        if prefix is None:
            candidates = sorted(
                f[: -len(".index")] for f in os.listdir(path) if f.endswith(".index")
            )
            if not candidates:
                raise CheckpointError(
                    f"No checkpoint in directory {path!r}: expected a 'checkpoint' file or "
                    "'<prefix>.index' + '<prefix>.data-*' files (an unpacked official "
                    "efficientdet-d*.tar.gz / efficientnetv2-*.tgz)."
                )
            prefix = os.path.join(path, candidates[-1])
        return prefix
    if os.path.exists(path + ".index"):
        return path
    raise CheckpointError(
        f"Checkpoint {path!r} not found: pass a directory holding a checkpoint or a "
        "prefix such as 'dir/model' (with 'dir/model.index')."
    )


def _read_checkpoint(prefix):
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as error:
        raise CheckpointError(
            f"Checkpoint {prefix!r} is unreadable or corrupted ({error.__class__.__name__}: "
            f"{str(error).splitlines()[0]}). Re-download or re-extract it."
        ) from None
    return reader, shapes


def load_official_checkpoint(model, path, use_ema=True, skip_mismatch=False, require_all=False,
                             min_fraction=0.5):
    """Assigns an official checkpoint's values to ``model``'s variables by name.

    Nothing is assigned unless the whole import is valid, so a failed import
    never leaves a partially loaded model.

    Args:
        model: a Keras model or layer built by this project (variables created).
        path: checkpoint directory or prefix.
        use_ema: prefer ``<name>/ExponentialMovingAverage`` values when present.
        skip_mismatch: leave variables whose shape differs (e.g. a class head with
            another number of classes) at their initial values instead of failing.
        require_all: fail if any model variable is missing from the checkpoint.
        min_fraction: fail if fewer than this fraction of the model's variables
            are found (a foreign checkpoint), unless at least one whole top-level
            scope matched (a backbone-only checkpoint into a detector).

    Returns:
        An :class:`ImportReport`.

    Raises:
        CheckpointError: unreadable / foreign checkpoint, shape mismatch (without
            ``skip_mismatch``), or missing variables with ``require_all``.
    """
    prefix = resolve_checkpoint_prefix(path)
    reader, ckpt_shapes = _read_checkpoint(prefix)
    report = ImportReport(checkpoint=prefix)
    assignments = []
    mismatches = []
    variables = list(model.weights)
    for variable in variables:
        name = official_name(variable.path)
        key = name + EMA_SUFFIX if use_ema and name + EMA_SUFFIX in ckpt_shapes else name
        if key not in ckpt_shapes:
            report.missing.append(name)
            continue
        ckpt_shape = tuple(ckpt_shapes[key])
        model_shape = tuple(variable.shape)
        if ckpt_shape != model_shape:
            mismatches.append((name, model_shape, ckpt_shape))
            continue
        assignments.append((variable, key))
        report.loaded.append(name)
        report.used_ema += key.endswith(EMA_SUFFIX)
    if mismatches and not skip_mismatch:
        shown = "; ".join(f"{n}: model {m} vs checkpoint {c}" for n, m, c in mismatches[:5])
        raise CheckpointError(
            f"{len(mismatches)} variables of {prefix!r} have other shapes than the model ({shown}). "
            "If the number of classes differs, pass skip_mismatch (main.py fine-tuning does) "
            "so those layers are re-initialized."
        )
    report.skipped_shape = mismatches
    if not report.loaded:
        raise CheckpointError(
            f"Checkpoint {prefix!r} shares no variable names with model {model.name!r} "
            f"(model expects e.g. {official_name(variables[0].path)!r}, checkpoint has e.g. "
            f"{next(iter(sorted(ckpt_shapes)), '<nothing>')!r}). Is it a checkpoint of another model?"
        )
    found = (len(report.loaded) + len(mismatches)) / max(1, len(variables))
    top_scopes_full = _fully_matched_scopes(variables, set(report.missing))
    if found < min_fraction and not top_scopes_full:
        raise CheckpointError(
            f"Only {found:.0%} of model {model.name!r}'s variables are in {prefix!r}; "
            "this looks like a checkpoint of another model."
        )
    if require_all and report.missing:
        raise CheckpointError(
            f"{len(report.missing)} variables of model {model.name!r} are not in {prefix!r}, "
            f"e.g. {report.missing[:5]}."
        )
    wanted = {official_name(v.path) for v in variables}
    report.unused = sorted(
        k for k in ckpt_shapes
        if not k.endswith(EMA_SUFFIX) and k != "global_step" and k not in wanted
        and "/Momentum" not in k and "/RMSProp" not in k
    )
    try:
        values = [reader.get_tensor(key) for _, key in assignments]
    except (tf.errors.OpError, ValueError, IndexError) as error:
        raise CheckpointError(
            f"Checkpoint {prefix!r} is corrupted: reading its values failed "
            f"({str(error).splitlines()[0]}). Re-download or re-extract it; nothing was loaded."
        ) from None
    for (variable, _), value in zip(assignments, values):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    logging.info("%s", report.summary())
    return report


def _fully_matched_scopes(variables, missing):
    """Top-level scopes (e.g. ``efficientnet-b0``) all of whose variables were found."""
    scopes = {}
    for variable in variables:
        scope = official_name(variable.path).split("/")[0]
        scopes.setdefault(scope, []).append(official_name(variable.path))
    return [s for s, names in scopes.items() if len(names) > 1 and not set(names) & missing]
