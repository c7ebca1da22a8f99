"""What ``--runmode benchmark`` times: Keras variants, a SavedModel, a TFLite file.

Each builder returns ``(variant, part, make)`` targets for
:func:`common.export.benchmark.run_benchmarks`. Inputs: ``network`` parts get
standard-normal images at the network size (already "normalized");
``end_to_end`` parts get uint8 images — random noise at the network size, or
the given image repeated to the batch size.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from common.export.errors import ExportError

VARIANTS = ("fp32", "amp", "xla", "amp+xla")
VARIANT_DEFINITIONS = {
    "fp32": "float32 network, graph mode (tf.function), no XLA",
    "amp": "mixed_float16 network (float16 compute, float32 variables and outputs)",
    "xla": "float32 network compiled with XLA (jit_compile=True); pre/post-processing not",
    "amp+xla": "mixed_float16 network compiled with XLA",
    "saved_model": "the exported SavedModel's raw_outputs / serving_default signatures",
    "tflite": "the TFLite file in tf.lite.Interpreter (default threads); a file with a "
              "static batch size is called once per chunk of that size",
}


def parse_variants(text):
    """``"fp32,xla"`` → ``["fp32", "xla"]``; raises ExportError naming a bad entry."""
    variants = [v.strip() for v in text.split(",") if v.strip()]
    for variant in variants:
        if variant not in VARIANTS:
            raise ExportError(f"Benchmark variant {variant!r} is not one of {VARIANTS}.")
    return variants


def _network_inputs(image_size, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.standard_normal((batch_size, *image_size, 3)).astype(np.float32))


def _uint8_inputs(image_size, batch_size, image=None, seed=1):
    if image is not None:
        return tf.constant(np.repeat(np.asarray(image, np.uint8)[None], batch_size, axis=0))
    rng = np.random.default_rng(seed)
    return tf.constant(rng.integers(0, 256, (batch_size, *image_size, 3), dtype=np.uint8))


def keras_targets(build_module, variants, image=None):
    """Targets for in-memory wrappers.

    Args:
        build_module: ``build_module(mixed_precision: bool)`` → inference wrapper
            with weights loaded.
        variants: names from :data:`VARIANTS`.
        image: optional uint8 ``[H, W, 3]`` for the end-to-end input.
    """
    from common.export.predictors import KerasPredictor

    targets = []
    for variant in variants:
        module = build_module("amp" in variant)
        predictor = KerasPredictor(module, jit_compile="xla" in variant)
        size = module.image_size
        targets.append((variant, "network", lambda b, p=predictor, s=size: (
            p.network_fn, _network_inputs(s, b))))
        targets.append((variant, "end_to_end", lambda b, p=predictor, s=size: (
            p.end_to_end_fn, _uint8_inputs(s, b, image))))
    return targets


def saved_model_targets(export_dir, image=None):
    """Targets for an exported SavedModel (its ``raw_outputs`` and ``serving_default``)."""
    from common.export.predictors import SavedModelPredictor

    predictor = SavedModelPredictor(export_dir)
    size = predictor.image_size
    network = predictor.network_fn
    end_to_end = predictor.end_to_end_fn
    return [
        ("saved_model", "network", lambda b: (
            lambda x: network(normalized_images=x), _network_inputs(size, b))),
        ("saved_model", "end_to_end", lambda b: (
            lambda x: end_to_end(images=x), _uint8_inputs(size, b, image))),
    ]


def tflite_targets(path, postprocess_module=None, num_threads=None):
    """Targets for a TFLite file (uint8 network-size input).

    A file with post-processing is timed as ``end_to_end``; a raw one as
    ``network`` (preprocessing included: normalization only at that size) and,
    given ``postprocess_module``, also ``end_to_end`` with the NMS in TensorFlow.
    """
    from common.export.predictors import TFLitePredictor

    predictor = TFLitePredictor(path, postprocess_module, num_threads=num_threads)
    size = predictor.image_size

    def inputs(b):
        return _uint8_inputs(size, b).numpy()

    targets = []
    if predictor.returns_raw:
        targets.append(("tflite", "network", lambda b: (predictor.raw, inputs(b))))
    if not predictor.returns_raw or postprocess_module is not None:
        targets.append(("tflite", "end_to_end", lambda b: (predictor, inputs(b))))
    return targets


def parse_batch_sizes(text):
    """``"1,8"`` → ``[1, 8]``; raises ExportError for anything but positive integers."""
    try:
        sizes = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ExportError(f"--batch_sizes {text!r} must be positive integers, e.g. '1,8'.")
    return sizes
