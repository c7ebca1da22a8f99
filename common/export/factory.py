"""Config (+ checkpoint) → inference wrapper of the right model family.

``common`` imports nothing from the model packages at import time; the wrapper
class is looked up by task, the way :mod:`common.config.experiment` finds
model families.
"""
from __future__ import annotations

import importlib

import keras
from absl import logging

from common.config import build_network

_WRAPPERS = {
    "detection": ("efficientdet.inference", "DetectionInference"),
    "classification": ("efficientnet_v2.inference", "ClassifierInference"),
}


def wrapper_class(task):
    """The :class:`common.export.module.InferenceModule` subclass for ``task``."""
    if task not in _WRAPPERS:
        raise ValueError(f"No inference wrapper for task {task!r}; known: {sorted(_WRAPPERS)}.")
    module_name, class_name = _WRAPPERS[task]
    return getattr(importlib.import_module(module_name), class_name)


def build_inference_module(config, ckpt_path=None, use_ema=True, mixed_precision=False):
    """Builds the network of ``config``, loads weights, wraps it for inference.

    Args:
        config: a resolved ``ExperimentConfig``.
        ckpt_path: training checkpoint (``main.py``'s model dir or prefix) or an
            official google/automl checkpoint; None keeps the random
            initialization (logged as a warning: only good for benchmarks).
        use_ema: load the moving-average weights when the checkpoint has them.
        mixed_precision: build the network under the ``mixed_float16`` policy
            (outputs stay float32). The global policy is restored afterwards.

    Returns:
        The family's inference wrapper.

    Raises:
        common.checkpoints.CheckpointError: missing, corrupted or foreign checkpoint.
    """
    previous = keras.mixed_precision.global_policy().name
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        network = build_network(config)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    if ckpt_path:
        from common.checkpoints import restore_for_inference

        restore_for_inference(network, ckpt_path, use_ema=use_ema)
    else:
        logging.warning("No --ckpt_path: %s keeps its random initialization "
                        "(fine for benchmarks, meaningless outputs).", config.model.name)
    return wrapper_class(config.task).from_config(network, config.model)
