"""EfficientDet inference on any Keras backend (NumPy letterbox and NMS around the network).

The twin of :class:`efficientdet.inference.DetectionInference` for backends
other than TensorFlow (see :mod:`common.export.portable`): the same letterbox
(:func:`dataset.numpy_preprocessing.letterbox_numpy`), the same anchors and
NMS settings from the config, and
:func:`common.detection.postprocess_numpy.postprocess_numpy` in place of the
TensorFlow NMS. Same output names, shapes and dtypes: ``detection_boxes
[B, D, 4]``, ``detection_scores [B, D]``, ``detection_classes [B, D]`` (1-based,
0 in padded rows), ``num_detections [B]``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from common.detection.anchors import AnchorSet
from common.detection.nms import NmsSettings
from common.detection.postprocess_numpy import postprocess_numpy
from common.export.portable import PortableInference
from efficientdet.inference_settings import DetectionSettings
from dataset.numpy_preprocessing import DETECTION_NORMALIZATION, letterbox_numpy


class PortableDetectionInference(DetectionSettings, PortableInference):
    """EfficientDet network + NumPy letterbox + NumPy NMS (arguments as
    :class:`efficientdet.inference.DetectionInference`)."""

    def __init__(self, network, image_size, num_classes, anchors: Optional[AnchorSet] = None,
                 nms: Optional[NmsSettings] = None, nms_method: Optional[str] = None,
                 normalization=DETECTION_NORMALIZATION):
        super().__init__(network, image_size)
        self._configure(num_classes, anchors, nms, nms_method, normalization)

    def preprocess_batch(self, images):
        normalized, scale_to_original = letterbox_numpy(images, self.image_size,
                                                        self.normalization)
        side = np.full([normalized.shape[0]], scale_to_original, np.float32)
        return normalized, side

    def raw_outputs(self, normalized):
        """Normalized ``[B, h, w, 3]`` → ``{"class_outputs_p3": [B, H_3, W_3, A*C], …,
        "box_outputs_p3": [B, H_3, W_3, A*4], …}`` (float32 NumPy)."""
        outputs = self.network_outputs(normalized)
        raw = {}
        for level, cls, box in zip(self.levels, outputs["class_outputs"], outputs["box_outputs"]):
            raw[f"class_outputs_p{level}"] = np.asarray(cls, np.float32)
            raw[f"box_outputs_p{level}"] = np.asarray(box, np.float32)
        return raw

    def postprocess(self, raw, side_info):
        det = postprocess_numpy(
            [raw[f"class_outputs_p{level}"] for level in self.levels],
            [raw[f"box_outputs_p{level}"] for level in self.levels],
            self.anchor_boxes, self.image_size, self.num_classes,
            image_scales=side_info, **self.nms,
        )
        return {
            "detection_boxes": det.boxes,
            "detection_scores": det.scores,
            "detection_classes": det.classes,
            "num_detections": det.num_detections,
        }
