"""Config (+ checkpoint) → inference wrapper of the right model family.

The wrapper class comes from the config's :class:`common.families.ModelFamily`
(``common`` imports no model package): on the TensorFlow backend its
``InferenceModule`` (one graph, exportable), on any other Keras backend its
``portable_wrapper`` (NumPy pre- and post-processing, :mod:`common.export.portable`).
Weights come from any checkpoint we accept on TensorFlow, and from a Keras-weights
export (:mod:`common.export.keras_weights`) on every backend.
"""
from __future__ import annotations

import keras
from absl import logging

from common.config import build_network
from common.export.keras_weights import check_readable, load_network_weights


def wrapper_class(config, portable=False):
    """The :class:`common.export.module.InferenceModule` subclass of ``config``'s family,
    or (``portable``) its :class:`common.export.portable.PortableInference` twin.

    Raises:
        ConfigError: ``portable`` for a family that has no portable wrapper.
    """
    if not portable:
        return config.family.inference_wrapper()
    if config.family.portable_wrapper is None:
        from common.config import ConfigError

        raise ConfigError(f"{config.model.name} runs only on the TensorFlow backend "
                          f"(KERAS_BACKEND=tensorflow), not on {keras.backend.backend()}.")
    return config.family.portable_wrapper()


def build_inference_module(config, ckpt_path=None, use_ema=True, mixed_precision=False,
                           policy=None, fold_batch_norm=True, portable=None,
                           settings_only=False):
    """Builds the network of ``config``, loads weights, wraps it for inference.

    Args:
        config: a resolved ``ExperimentConfig``.
        ckpt_path: training checkpoint (``main.py``'s model dir or prefix), an
            official google/automl checkpoint (both TensorFlow backend only) or a
            Keras-weights export (any backend); None keeps the random
            initialization (logged as a warning: only good for benchmarks).
        use_ema: load the moving-average weights when the checkpoint has them.
        mixed_precision: build the network under the ``mixed_float16`` policy
            (outputs stay float32). The global policy is restored afterwards.
        policy: or any Keras dtype policy name (e.g. ``mixed_bfloat16``); wins over
            ``mixed_precision``.
        fold_batch_norm: fold every batch norm into the convolution before it
            (``conv + bias``, no batch-norm ops; same outputs within float
            rounding, faster). The wrapped network is then inference-only.
        portable: the NumPy-pipeline wrapper (:mod:`common.export.portable`) instead
            of the TensorFlow graph one; None: only on backends other than TensorFlow.
        settings_only: the wrapper is used only for its pre- and post-processing
            (e.g. around an exported TFLite file): no weights are loaded
            (``ckpt_path`` is ignored), no batch norm is folded, nothing is warned.

    Returns:
        The family's inference wrapper.

    Raises:
        common.checkpoints.CheckpointError: missing, corrupted or foreign checkpoint,
            or a TensorFlow checkpoint on another backend.
        common.config.ConfigError: a family without a portable wrapper off TensorFlow.
    """
    if portable is None:
        portable = keras.backend.backend() != "tensorflow"
    wrapper = wrapper_class(config, portable)
    if settings_only:
        return wrapper.from_config(build_network(config), config.model)
    check_readable(ckpt_path)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(
        policy or ("mixed_float16" if mixed_precision else previous))
    try:
        network = build_network(config)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    if ckpt_path:
        load_network_weights(network, ckpt_path, use_ema)
    else:
        logging.warning("No --ckpt_path: %s keeps its random initialization "
                        "(fine for benchmarks, meaningless outputs).", config.model.name)
    if fold_batch_norm:
        from common.layers.batch_norm_folding import fold_batch_norms

        fold_batch_norms(network)
    return wrapper.from_config(network, config.model)
