"""What both classifier inference pipelines share (TensorFlow-free): the pixel rule and top-k.

:class:`efficientnet_v2.inference.ClassifierInference` (one TensorFlow graph) and
:class:`efficientnet_v2.portable_inference.PortableClassifierInference` (NumPy
around the network, any Keras backend) take the same arguments and read the
same config; this mixin holds that part once.
"""
from __future__ import annotations

import numpy as np

from dataset.fixed_size_inputs import crop_or_resize_uint8
from dataset.normalizations import CLASSIFICATION_METHODS, uses_center_crop


class ClassifierSettings:
    """Sets ``normalization``, ``center_crop``, ``num_classes`` (from the network's
    output) and ``top_k`` (capped at the number of classes). Arguments: see
    :class:`efficientnet_v2.inference.ClassifierInference`."""

    task = "classification"

    def _configure(self, network, normalization, center_crop, top_k):
        if normalization not in CLASSIFICATION_METHODS:
            raise ValueError(f"normalization {normalization!r} must be one of "
                             f"{CLASSIFICATION_METHODS}.")
        self.normalization = normalization
        self.center_crop = center_crop
        self.num_classes = int(network.outputs[0].shape[-1])
        self.top_k = max(1, min(int(top_k), self.num_classes))

    def fit_pictures(self, images, image_size):
        """uint8 ``[B, H, W, 3]`` pictures → (uint8 ``[B, h, w, 3]`` for a fixed-size
        file of ``image_size``: the aspect window when the crop rule is on, else a
        resize; float32 ``[B]`` ones); :mod:`dataset.fixed_size_inputs`."""
        crop = self.center_crop
        if crop is None:
            crop = uses_center_crop(tuple(image_size), self.normalization)
        fitted = crop_or_resize_uint8(np.asarray(images, np.uint8), tuple(image_size), crop)
        return fitted, np.ones([fitted.shape[0]], np.float32)

    @classmethod
    def from_config(cls, network, model_config, top_k=5):
        """Builds the wrapper from a ``ClassificationModelConfig``."""
        return cls(network, model_config.image_size, normalization=model_config.preprocessing,
                   top_k=top_k)
