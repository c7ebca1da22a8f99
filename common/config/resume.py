"""What a run may change when it continues from a model directory's recorded recipe.

A model directory owns its recipe: ``model_dir/config.yaml`` is the resolved
config its checkpoints were trained with. ``--resume`` (and evaluation of a
model directory) starts from that file; command-line settings on top are
accepted only where they cannot change what the checkpoints mean, and every
accepted change is reported. Anything else (the model, its shapes, the batch
and step structure, the optimizer and its slots, the data stream's
augmentation and seed) is refused before any file is touched.
"""
from __future__ import annotations

import fnmatch

from common.config.errors import ConfigError
from common.config.loader import to_dict

# Settings a resumed training run may change (glob patterns over dotted keys).
RESUME_ALLOWED = (
    "train.num_epochs",
    # Recovering from a divergence: a lower rate / longer warm-up / clipping
    # continue the same weights and optimizer slots.
    "train.learning_rate", "train.lr_warmup_epoch", "train.lr_warmup_init",
    "train.clip_gradients_norm", "train.divergence_factor", "train.divergence_patience",
    # Recomputing activations changes memory and time, not the values.
    "train.gradient_checkpointing",
    # Where the data lives (the user names them explicitly) and how fast it is read.
    "data.train_file_pattern", "data.val_file_pattern", "data.val_json_file",
    "data.num_parallel_calls", "data.private_threadpool_size", "data.cache", "data.label_map",
    "eval.*",
    "runtime.model_dir", "runtime.use_xla", "runtime.strategy", "runtime.sync_bn",
    "runtime.log_every_n_steps", "runtime.keep_checkpoint_max",
    "runtime.checkpoint_every_n_steps", "runtime.deterministic",
)
# Evaluating a model directory: anything but the model itself.
EVAL_ALLOWED = ("data.*", "train.*", "eval.*", "runtime.*")


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def config_changes(recorded, requested):
    """``[(key, recorded value, requested value)]`` for every setting that differs."""
    old, new = _flatten(to_dict(recorded)), _flatten(to_dict(requested))
    return [(key, old.get(key), new.get(key)) for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)]


def check_changes(recorded, requested, recorded_path, allowed=RESUME_ALLOWED,
                  action="resume"):
    """The accepted changes of ``requested`` over ``recorded``.

    Args:
        recorded: the ``ExperimentConfig`` read from ``recorded_path``.
        requested: the config with the command line applied on top.
        recorded_path: the model directory's ``config.yaml`` (for the message).
        allowed: glob patterns of keys that may change.
        action: ``"resume"`` or ``"evaluate"`` (for the message).

    Returns:
        The accepted ``(key, old, new)`` changes.

    Raises:
        ConfigError: naming every refused key with both values.
    """
    changes = config_changes(recorded, requested)
    refused = [c for c in changes if not any(fnmatch.fnmatchcase(c[0], p) for p in allowed)]
    if refused:
        listed = "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in refused)
        raise ConfigError(
            f"Cannot {action} with settings that change what the checkpoints of "
            f"{recorded_path} mean ({listed}). Drop them from the command line to {action} "
            "the recorded run, or start a new --model_dir with --init_checkpoint pointing "
            "at this one. Nothing was changed.")
    return changes


def describe_changes(changes):
    """One line listing accepted changes (for the log)."""
    return "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changes)
