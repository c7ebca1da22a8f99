"""Converts an official google/automl checkpoint into our checkpoint format, once.

The output directory then holds what ``main.py`` writes during training, minus
the optimizer: an object-based ``tf.train.Checkpoint`` with ``model`` and
``ema`` entries (both the imported weights), so ``main.py --init_checkpoint``,
``main.py --mode eval --ckpt_path`` and ``model_inspect.py --ckpt_path`` read
it through :func:`common.checkpoints.restore_for_inference` without touching
the TF1 names again. Beside it: the resolved ``config.yaml`` of the model the
weights were imported into, and ``import_summary.json`` (loaded / missing /
skipped / unused variables).
"""
import dataclasses
import json
import os
import shutil

import tensorflow as tf
from absl import logging

from common.atomic_files import (
    commit_directory,
    commit_file,
    remove_stale_temporaries,
    temporary_path,
)
from common.checkpoints.official import CheckpointError, load_official_checkpoint
from common.checkpoints.official import resolve_checkpoint_prefix
from common.checkpoints.restore import is_training_checkpoint
from common.config import build_network, dump_config
from common.training import checkpoints as layout

SUMMARY_FILE = "import_summary.json"
CONFIG_FILE = "config.yaml"


@dataclasses.dataclass
class ConversionResult:
    """Where a conversion wrote its files and what it imported.

    Attributes:
        checkpoint: prefix of the written checkpoint (``<output_dir>/ckpt-0``).
        config_path: the resolved config of the converted model.
        summary_path: JSON listing loaded / missing / skipped / unused variables.
        report: the :class:`~common.checkpoints.official.ImportReport`.
    """

    checkpoint: str
    config_path: str
    summary_path: str
    report: object


def write_model_checkpoint(model, output_dir):
    """Writes ``model``'s current weights as one of our checkpoints (no optimizer).

    The EMA shadows equal the weights, so readers that prefer EMA weights and
    readers that take the raw ones get the same values.

    Args:
        model: a built Keras network.
        output_dir: directory to write ``ckpt-0.*`` and the ``checkpoint`` state file.

    Returns:
        The checkpoint prefix.
    """
    from common.training.ema import ExponentialMovingAverage

    ema = ExponentialMovingAverage(model.weights, decay=0.0)
    checkpoint = layout.training_checkpoint(model, ema)
    manager = tf.train.CheckpointManager(checkpoint, output_dir, max_to_keep=1)
    return manager.save(checkpoint_number=0)


def convert_official_checkpoint(config, ckpt, output_dir, use_ema=True, skip_mismatch=False):
    """Imports official checkpoint ``ckpt`` into ``config``'s network and saves it.

    Args:
        config: a resolved ``ExperimentConfig`` (model name, number of classes).
        ckpt: official checkpoint directory or prefix (detector, backbone-only
            EfficientNet, or EfficientNetV2 classifier).
        output_dir: new directory for the converted checkpoint.
        use_ema: take the ``/ExponentialMovingAverage`` values (as the official
            evaluation does).
        skip_mismatch: re-initialize layers whose shape differs (another number
            of classes) instead of failing.

    Returns:
        A :class:`ConversionResult`.

    Raises:
        CheckpointError: missing / corrupted / foreign checkpoint, a checkpoint
            already in our format, shape mismatches without ``skip_mismatch``,
            or an ``output_dir`` that already holds a checkpoint.
    """
    prefix = resolve_checkpoint_prefix(ckpt)
    if is_training_checkpoint(prefix):
        raise CheckpointError(
            f"{prefix!r} is already in our checkpoint format (written by main.py or this tool); "
            "pass it directly to main.py --init_checkpoint or model_inspect.py --ckpt_path.")
    if tf.train.latest_checkpoint(output_dir) is not None:
        raise CheckpointError(
            f"Output directory {output_dir!r} already holds a checkpoint; choose a new "
            "--output_dir (nothing was written).")
    model = build_network(config)
    try:
        report = load_official_checkpoint(model, prefix, use_ema=use_ema,
                                          skip_mismatch=skip_mismatch)
    except CheckpointError as error:
        if "other shapes" in str(error):
            raise CheckpointError(f"{error} (Command line: add --skip_mismatch.)") from None
        raise
    # Everything is written into a staging folder beside ``output_dir`` and moved in
    # only when complete (the 'checkpoint' state file last): a failed or killed
    # import leaves no half-written checkpoint behind.
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(parent)
    staging = temporary_path(output_dir)
    try:
        os.makedirs(staging)
        prefix_name = os.path.basename(write_model_checkpoint(model, staging))
        written = os.path.join(output_dir, prefix_name)
        dump_config(config, os.path.join(staging, CONFIG_FILE))
        with open(os.path.join(staging, SUMMARY_FILE), "w") as handle:
            json.dump(_summary_dict(report, config, written, use_ema), handle, indent=2)
        if not os.path.exists(output_dir):
            commit_directory(staging, output_dir)
        else:
            names = sorted(os.listdir(staging), key=lambda name: name == "checkpoint")
            for name in names:
                commit_file(os.path.join(staging, name), os.path.join(output_dir, name))
    finally:
        if os.path.lexists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    config_path = os.path.join(output_dir, CONFIG_FILE)
    summary_path = os.path.join(output_dir, SUMMARY_FILE)
    logging.info("Wrote %s (config %s, summary %s)", written, config_path, summary_path)
    return ConversionResult(written, config_path, summary_path, report)


def _summary_dict(report, config, written, use_ema):
    return {
        "source": report.checkpoint,
        "output": written,
        "model_name": config.model.name,
        "num_classes": config.model.num_classes,
        "use_ema": use_ema,
        "counts": {"loaded": len(report.loaded), "from_ema": report.used_ema,
                   "missing": len(report.missing), "skipped_shape": len(report.skipped_shape),
                   "unused": len(report.unused)},
        "loaded": report.loaded,
        "missing": report.missing,
        "skipped_shape": [{"name": n, "model_shape": list(m), "checkpoint_shape": list(c)}
                          for n, m, c in report.skipped_shape],
        "unused": report.unused,
    }
