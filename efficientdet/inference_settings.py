"""What both EfficientDet inference pipelines share: anchors, NMS settings, pixels.

:class:`efficientdet.inference.DetectionInference` (one TensorFlow graph) and
:class:`efficientdet.portable_inference.PortableDetectionInference` (NumPy around
the network, any Keras backend) take the same arguments and read the same
config; this mixin holds that part once. TensorFlow-free.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from common.detection.anchors import AnchorSet
from common.detection.nms import NmsSettings
from dataset.fixed_size_inputs import letterbox_uint8


class DetectionSettings:
    """Sets ``num_classes``, ``normalization``, ``anchors`` (an
    :class:`~common.detection.anchors.AnchorSet` for ``self.image_size``),
    ``anchor_boxes`` (NumPy ``[N, 4]``), ``levels``, ``nms_settings`` and ``nms``
    (the keyword arguments of the post-processing). Arguments: see
    :class:`efficientdet.inference.DetectionInference`."""

    task = "detection"
    outputs_boxes = True

    def _configure(self, num_classes, anchors: Optional[AnchorSet], nms: Optional[NmsSettings],
                   nms_method: Optional[str], normalization):
        self.num_classes = int(num_classes)
        self.normalization = normalization
        anchors = AnchorSet.build(self.image_size) if anchors is None else anchors
        if tuple(anchors.image_size) != tuple(self.image_size):
            raise ValueError(f"anchors were built for {anchors.image_size}, the network input is "
                             f"{self.image_size}; build them with AnchorSet.from_config(model_config).")
        self.anchors = anchors
        self.levels = tuple(range(anchors.min_level, anchors.max_level + 1))
        # A NumPy array, not a tf.constant: traced functions then embed it as a graph
        # constant instead of capturing an eager tensor (which ONNX would turn into an input).
        self.anchor_boxes = anchors.boxes
        nms = NmsSettings() if nms is None else nms
        if nms_method is not None:
            nms = dataclasses.replace(nms, mode=nms_method)
        self.nms_settings = nms
        # A plain dict: the exporters read ``nms["mode"]`` to refuse unsupported NMS.
        self.nms = nms.postprocess_kwargs()

    def fit_pictures(self, images, image_size):
        """uint8 ``[B, H, W, 3]`` pictures → (uint8 ``[B, h, w, 3]`` letterboxed to a
        fixed-size file's ``image_size``, float32 ``[B]`` scales from its box pixels to
        the pictures'); :mod:`dataset.fixed_size_inputs`."""
        fitted, scale = letterbox_uint8(np.asarray(images, np.uint8), tuple(image_size),
                                        self.normalization)
        return fitted, np.full([fitted.shape[0]], scale, np.float32)

    @classmethod
    def from_config(cls, network, model_config):
        """Builds the wrapper from a ``DetectionModelConfig``: anchors from
        :meth:`AnchorSet.from_config`, NMS from :meth:`NmsSettings.from_config`."""
        return cls(
            network, model_config.image_size, model_config.num_classes,
            anchors=AnchorSet.from_config(model_config),
            nms=NmsSettings.from_config(model_config.nms),
            normalization=model_config.preprocessing,
        )
