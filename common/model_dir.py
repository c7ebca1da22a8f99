"""The layout of a training model directory, for tools that are handed one.

``main.py --mode train --model_dir D`` writes ``D/config.yaml`` (the resolved
recipe), ``D/label_map.json`` (class names, when known), checkpoints
``D/ckpt-N.*`` and the best one under ``D/best/``.
"""
from __future__ import annotations

import os

CONFIG_FILE = "config.yaml"


def model_dir_of(path):
    """The model directory ``path`` belongs to, or None.

    Args:
        path: a model directory, a checkpoint prefix inside one (``D/ckpt-3``),
            or its ``best/`` sub-folder / a prefix in it.

    Returns:
        The directory holding ``config.yaml``, or None when ``path`` is not part
        of a model directory (e.g. an official checkpoint folder).
    """
    if not path:
        return None
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    for candidate in (directory, os.path.dirname(directory)):
        if candidate and os.path.isfile(os.path.join(candidate, CONFIG_FILE)):
            return candidate
    return None
