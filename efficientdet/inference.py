"""EfficientDet inference: uint8 images → letterbox → network → NMS → detections.

The evaluation-time preprocessing of the official google/automl EfficientDet
(Tan, Pang & Le 2020, §5.1), written as a wrapper around the pure network
(networks are never subclassed). Pre-processing is the one shared
implementation in :mod:`dataset.preprocessing`, so serving sees the pixels
evaluation sees:

1. **letterbox** (:func:`dataset.preprocessing.resize_and_pad`): scale by
   ``s = min(h / H, w / W)`` (network ``h × w``, image ``H × W``), keeping the
   aspect ratio, bilinear; the image sits in the top-left corner and the rest
   is zero-padded *after* normalization (padding = the mean colour);
2. **normalize** with the ImageNet mean / std in 0–255 RGB units;
3. the network's raw outputs → :func:`common.detection.postprocess.postprocess`
   with the config's NMS settings (:class:`common.detection.nms.NmsSettings`);
4. boxes × ``1 / s`` → original-image pixels ``(ymin, xmin, ymax, xmax)``.
   As in the official code, boxes are clipped to the network input (in the
   clipping NMS modes), not to the original image: a box may reach into the
   padding.

Outputs (the TF Object Detection API names): ``detection_boxes [B, D, 4]``
float32, ``detection_scores [B, D]`` float32, ``detection_classes [B, D]`` int32
(1-based, 0 in padded rows), ``num_detections [B]`` int32, with
``D = nms.max_output_size``.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from common.detection.anchors import AnchorSet
from common.detection.nms import NmsSettings
from common.detection.postprocess import postprocess
from common.export.module import InferenceModule, fold_batch, unfold_batch
from efficientdet.inference_settings import DetectionSettings
from dataset.preprocessing import (
    DETECTION_NORMALIZATION,
    normalize_image,
    preprocess_detection_image,
    resize_and_pad,
)


def letterbox(images, image_size, normalization=DETECTION_NORMALIZATION):
    """Official EfficientDet eval preprocessing of one image or a batch of one size.

    Args:
        images: ``[H, W, 3]`` or ``[B, H, W, 3]`` RGB, values 0–255 (any real dtype).
        image_size: network ``(height, width)``.
        normalization: a name of :data:`dataset.preprocessing.NORMALIZATIONS`.

    Returns:
        ``(normalized, scale_to_original)``: float32 ``[h, w, 3]`` (or
        ``[B, h, w, 3]``) and the float32 scalar ``1 / s`` mapping network
        pixels back to image pixels.
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        return preprocess_detection_image(images, image_size, normalization)
    batch_size = tf.shape(images)[0]

    def normalize(folded):
        return fold_batch(normalize_image(unfold_batch(folded, batch_size), normalization))

    padded, scale_to_original = resize_and_pad(fold_batch(images), image_size, window_fn=normalize)
    return unfold_batch(padded, batch_size), scale_to_original


class DetectionInference(DetectionSettings, InferenceModule):
    """EfficientDet network + letterbox + normalization + NMS (see the module docstring).

    Args:
        network: a pure EfficientDet (:func:`efficientdet.builder.build_efficientdet`).
        image_size: network input, int or ``(height, width)``.
        num_classes: classes of the class head.
        anchors: the network's :class:`~common.detection.anchors.AnchorSet`
            (boxes ``[N, 4]``) for ``image_size``; default: the official layout
            (levels 3–7, 3 scales, ratios 1, 2, 0.5, anchor scale 4).
        nms: post-processing settings; default :class:`NmsSettings` (the
            official Gaussian soft-NMS).
        nms_method: optional method name (:data:`common.detection.nms.NMS_METHODS`)
            replacing ``nms.mode``.
        normalization: pixel normalisation of the network's checkpoints
            (:data:`dataset.preprocessing.NORMALIZATIONS`; the model's ``preprocessing``).
        name: module name.

    Use :meth:`from_config` to build it from a detector config.
    """

    def __init__(self, network, image_size, num_classes, anchors: Optional[AnchorSet] = None,
                 nms: Optional[NmsSettings] = None, nms_method: Optional[str] = None,
                 normalization=DETECTION_NORMALIZATION, name="efficientdet_inference"):
        super().__init__(network, image_size, name=name)
        self._configure(num_classes, anchors, nms, nms_method, normalization)

    def preprocess_batch(self, images):
        normalized, scale_to_original = letterbox(images, self.image_size, self.normalization)
        normalized = tf.ensure_shape(normalized, [None, *self.image_size, 3])
        return normalized, tf.fill(tf.shape(images)[:1], scale_to_original)

    def preprocess_single(self, image):
        return letterbox(image, self.image_size, self.normalization)

    def raw_outputs(self, normalized):
        """Normalized ``[B, h, w, 3]`` → ``{"class_outputs_p3": [B, H_3, W_3, A*C], …,
        "box_outputs_p3": [B, H_3, W_3, A*4], …}`` (float32)."""
        outputs = self.network(normalized, training=False)
        raw = {}
        for level, cls, box in zip(self.levels, outputs["class_outputs"], outputs["box_outputs"]):
            raw[f"class_outputs_p{level}"] = tf.cast(cls, tf.float32)
            raw[f"box_outputs_p{level}"] = tf.cast(box, tf.float32)
        return raw

    def postprocess(self, raw, side_info, unroll=False):
        """Raw outputs + ``[B]`` scale-to-original → detections dict (module docstring).

        ``unroll``: the loop-free NMS graph (static batch size), see
        :func:`common.detection.postprocess.postprocess`.
        """
        det = postprocess(
            [raw[f"class_outputs_p{level}"] for level in self.levels],
            [raw[f"box_outputs_p{level}"] for level in self.levels],
            self.anchor_boxes, self.image_size, self.num_classes,
            image_scales=side_info, unroll=unroll, **self.nms,
        )
        return {
            "detection_boxes": det.boxes,
            "detection_scores": det.scores,
            "detection_classes": det.classes,
            "num_detections": det.num_detections,
        }
