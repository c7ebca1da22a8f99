"""Inference on any Keras backend: NumPy pre- and post-processing around the network.

:class:`common.export.module.InferenceModule` is a ``tf.Module`` whose
pre-processing, network and post-processing form one TensorFlow graph (what
SavedModel, TFLite and ONNX export). On another Keras backend (JAX) the
network runs through Keras (``predict_on_batch``: compiled once per input
shape, ``jax.jit`` on JAX) and the pre- and post-processing are NumPy twins of
the TensorFlow functions (:mod:`dataset.numpy_preprocessing`,
:mod:`common.detection.postprocess_numpy`), tested to give the same pixels and
the same detections.

A family subclasses :class:`PortableInference` with the same hooks and
attributes as its ``InferenceModule`` (``task``, ``outputs_boxes``,
``image_size``, ``network``, ``preprocess_batch``, ``raw_outputs``,
``postprocess``) and names it as its family's ``portable_wrapper``.
This module imports no TensorFlow.
"""
from __future__ import annotations

import numpy as np

from common.detection.image_size import parse_image_size


class PortableInference:
    """Pure network + NumPy pre- and post-processing (any Keras backend).

    Args:
        network: the pure Keras network (normalized float images → raw outputs).
        image_size: the network input ``(height, width)``.

    Inputs are ``[B, H, W, 3]`` RGB arrays (uint8, or any real dtype holding 0–255).
    """

    task = None
    outputs_boxes = False

    def __init__(self, network, image_size):
        self.network = network
        self.image_size = parse_image_size(image_size)

    def preprocess_batch(self, images):
        """``[B, H, W, 3]`` images of one size → (normalized float32 ``[B, h, w, 3]``,
        per-image float32 ``[B]`` side information for ``postprocess``)."""
        raise NotImplementedError

    def network_outputs(self, normalized):
        """The network's outputs for normalized float32 ``[B, h, w, 3]``, as NumPy."""
        return self.network.predict_on_batch(np.asarray(normalized, np.float32))

    def raw_outputs(self, normalized):
        """Normalized ``[B, h, w, 3]`` → dict of float32 NumPy raw outputs (named as the
        family's ``InferenceModule`` names them)."""
        raise NotImplementedError

    def postprocess(self, raw, side_info):
        """Raw outputs + ``[B]`` side information → dict of final NumPy outputs."""
        raise NotImplementedError

    def __call__(self, images):
        """End to end: ``[B, H, W, 3]`` images of one size → final outputs dict."""
        normalized, side_info = self.preprocess_batch(np.asarray(images))
        return self.postprocess(self.raw_outputs(normalized), side_info)


class PortablePredictor:
    """:class:`common.export.predictors.KerasPredictor`'s calling convention for a
    :class:`PortableInference` (uint8 ``[B, H, W, 3]`` → dict of NumPy outputs)."""

    kind = "portable"

    def __init__(self, module):
        self.module = module
        self.image_size = module.image_size
        self.task = module.task
        self.outputs_boxes = module.outputs_boxes

    def __call__(self, images):
        return self.module(images)

    def raw(self, normalized):
        return self.module.raw_outputs(normalized)
