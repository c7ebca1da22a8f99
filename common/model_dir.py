"""The layout of a training model directory, for tools that are handed one.

``main.py --mode train --model_dir D`` writes ``D/config.yaml`` (the resolved
recipe), ``D/label_map.json`` (class names, when known), checkpoints
``D/ckpt-N.*`` and the best one under ``D/best/``.
"""
from __future__ import annotations

import os

import yaml

CONFIG_FILE = "config.yaml"
_SECTIONS = {"model", "data", "train", "eval", "runtime"}


def _is_resolved_config(path):
    """Whether ``path`` is a config this project wrote (not, e.g., the hparams
    ``config.yaml`` google/automl keeps beside its checkpoints)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return (isinstance(data, dict) and bool(data) and set(data) <= _SECTIONS
            and isinstance(data.get("model"), dict) and "name" in data["model"])


def model_dir_of(path):
    """The model directory ``path`` belongs to, or None.

    Args:
        path: a model directory, a checkpoint prefix inside one (``D/ckpt-3``),
            or its ``best/`` sub-folder / a prefix in it.

    Returns:
        The directory holding our ``config.yaml``, or None when ``path`` is not
        part of a model directory (e.g. an official checkpoint folder, whose
        ``config.yaml`` holds google/automl's hyperparameters).
    """
    if not path:
        return None
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    for candidate in (directory, os.path.dirname(directory)):
        if candidate and _is_resolved_config(os.path.join(candidate, CONFIG_FILE)):
            return candidate
    return None
