"""Config (+ checkpoint) → inference wrapper of the right model family.

The wrapper class comes from the config's :class:`common.families.ModelFamily`
(``common`` imports no model package).
"""
from __future__ import annotations

import keras
from absl import logging

from common.config import build_network


def wrapper_class(config):
    """The :class:`common.export.module.InferenceModule` subclass of ``config``'s family."""
    return config.family.inference_wrapper()


def build_inference_module(config, ckpt_path=None, use_ema=True, mixed_precision=False,
                           policy=None, fold_batch_norm=True):
    """Builds the network of ``config``, loads weights, wraps it for inference.

    Args:
        config: a resolved ``ExperimentConfig``.
        ckpt_path: training checkpoint (``main.py``'s model dir or prefix) or an
            official google/automl checkpoint; None keeps the random
            initialization (logged as a warning: only good for benchmarks).
        use_ema: load the moving-average weights when the checkpoint has them.
        mixed_precision: build the network under the ``mixed_float16`` policy
            (outputs stay float32). The global policy is restored afterwards.
        policy: or any Keras dtype policy name (e.g. ``mixed_bfloat16``); wins over
            ``mixed_precision``.
        fold_batch_norm: fold every batch norm into the convolution before it
            (``conv + bias``, no batch-norm ops; same outputs within float
            rounding, faster). The wrapped network is then inference-only.

    Returns:
        The family's inference wrapper.

    Raises:
        common.checkpoints.CheckpointError: missing, corrupted or foreign checkpoint.
    """
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(
        policy or ("mixed_float16" if mixed_precision else previous))
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
    if fold_batch_norm:
        from common.layers.batch_norm_folding import fold_batch_norms

        fold_batch_norms(network)
    return wrapper_class(config).from_config(network, config.model)
