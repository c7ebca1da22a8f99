"""EfficientNet(V2) inference on any Keras backend (NumPy crop / resize and softmax).

The twin of :class:`efficientnet_v2.inference.ClassifierInference` for backends
other than TensorFlow (see :mod:`common.export.portable`), with the same
pre-processing (:func:`dataset.numpy_preprocessing.classification_preprocess_numpy`)
and the same outputs: ``logits [B, C]``, ``probabilities [B, C]`` float32,
``top_k_classes [B, k]`` int32 (0-based, best first), ``top_k_probabilities [B, k]``.
"""
from __future__ import annotations

import numpy as np

from common.export.portable import PortableInference
from efficientnet_v2.inference_settings import ClassifierSettings
from dataset.numpy_preprocessing import classification_preprocess_numpy


def softmax_top_k(logits, k):
    """Float32 ``[B, C]`` logits → (probabilities ``[B, C]``, top-k probabilities ``[B, k]``,
    top-k classes int32 ``[B, k]``; equal probabilities: lower class first, as ``tf.math.top_k``)."""
    logits = np.asarray(logits, np.float32)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k].astype(np.int32)
    return probabilities, np.take_along_axis(probabilities, order, axis=-1), order


class PortableClassifierInference(ClassifierSettings, PortableInference):
    """Classifier + NumPy crop / resize / normalization + softmax / top-k (arguments as
    :class:`efficientnet_v2.inference.ClassifierInference`)."""

    def __init__(self, network, image_size, normalization="scale_128", center_crop=None,
                 top_k=5):
        super().__init__(network, image_size)
        self._configure(network, normalization, center_crop, top_k)

    def preprocess_batch(self, images):
        normalized = classification_preprocess_numpy(images, self.image_size, self.normalization,
                                                     self.center_crop)
        return normalized, np.ones([normalized.shape[0]], np.float32)

    def raw_outputs(self, normalized):
        """Normalized ``[B, h, w, 3]`` → ``{"logits": [B, C]}`` float32 NumPy."""
        return {"logits": np.asarray(self.network_outputs(normalized), np.float32)}

    def postprocess(self, raw, side_info):
        del side_info  # no geometry
        logits = raw["logits"]
        probabilities, top_probabilities, top_classes = softmax_top_k(logits, self.top_k)
        return {
            "logits": logits,
            "probabilities": probabilities,
            "top_k_classes": top_classes,
            "top_k_probabilities": top_probabilities,
        }
