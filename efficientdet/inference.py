"""EfficientDet inference: uint8 images → letterbox → network → NMS → detections.

The evaluation-time preprocessing of the official google/automl EfficientDet
(Tan, Pang & Le 2020, §5.1), written as a wrapper around the pure network
(DESIGN.md: networks are never subclassed). Pre-processing is the one shared
implementation in :mod:`dataset.preprocessing`, so serving sees the pixels
evaluation sees:

1. **letterbox** (:func:`dataset.preprocessing.resize_and_pad`): scale by
   ``s = min(h / H, w / W)`` (network ``h × w``, image ``H × W``), keeping the
   aspect ratio, bilinear; the image sits in the top-left corner and the rest
   is zero-padded *after* normalization (padding = the mean colour);
2. **normalize** with the ImageNet mean / std in 0–255 RGB units;
3. the network's raw outputs → :func:`efficientdet.postprocess.postprocess`
   with the config's NMS settings;
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

import tensorflow as tf

from common.export.module import InferenceModule, fold_batch, unfold_batch
from dataset.preprocessing import (
    normalize_detection_image,
    preprocess_detection_image,
    resize_and_pad,
)
from efficientdet.anchors import generate_anchors
from efficientdet.postprocess import postprocess


def letterbox(images, image_size):
    """Official EfficientDet eval preprocessing of one image or a batch of one size.

    Args:
        images: ``[H, W, 3]`` or ``[B, H, W, 3]`` RGB, values 0–255 (any real dtype).
        image_size: network ``(height, width)``.

    Returns:
        ``(normalized, scale_to_original)``: float32 ``[h, w, 3]`` (or
        ``[B, h, w, 3]``) and the float32 scalar ``1 / s`` mapping network
        pixels back to image pixels.
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        return preprocess_detection_image(images, image_size)
    batch_size = tf.shape(images)[0]

    def normalize(folded):
        return fold_batch(normalize_detection_image(unfold_batch(folded, batch_size)))

    padded, scale_to_original = resize_and_pad(fold_batch(images), image_size, window_fn=normalize)
    return unfold_batch(padded, batch_size), scale_to_original


class DetectionInference(InferenceModule):
    """EfficientDet network + letterbox + normalization + NMS (see the module docstring).

    Args:
        network: a pure EfficientDet (:func:`efficientdet.network.build_efficientdet`).
        image_size: network input ``(height, width)``.
        num_classes: classes of the class head.
        min_level, max_level, num_scales, aspect_ratios, anchor_scale: anchor layout.
        nms_method: a :data:`efficientdet.postprocess.MODES` name or the aliases
            ``gaussian`` / ``hard``.
        iou_threshold, score_threshold, sigma, max_detections, max_candidates:
            see :func:`efficientdet.postprocess.postprocess`.
    """

    task = "detection"

    def __init__(self, network, image_size, num_classes, min_level=3, max_level=7, num_scales=3,
                 aspect_ratios=(1.0, 2.0, 0.5), anchor_scale=4.0, nms_method="gaussian",
                 iou_threshold=0.5, score_threshold=0.001, sigma=0.5, max_detections=100,
                 max_candidates=5000, name="efficientdet_inference"):
        super().__init__(network, image_size, name=name)
        self.num_classes = int(num_classes)
        self.levels = tuple(range(min_level, max_level + 1))
        # A NumPy array, not a tf.constant: traced functions then embed it as a graph
        # constant instead of capturing an eager tensor (which ONNX would turn into an input).
        self.anchor_boxes = generate_anchors(
            self.image_size, min_level, max_level, num_scales, tuple(aspect_ratios), anchor_scale)
        self.nms = dict(mode=nms_method, iou_threshold=float(iou_threshold),
                        score_threshold=float(score_threshold), sigma=float(sigma),
                        max_detections=int(max_detections), max_candidates=int(max_candidates or 0))

    @classmethod
    def from_config(cls, network, model_config):
        """Builds the wrapper from a ``DetectionModelConfig`` (anchors, NMS settings)."""
        nms = model_config.nms
        return cls(
            network, model_config.image_size, model_config.num_classes,
            min_level=model_config.min_level, max_level=model_config.max_level,
            num_scales=model_config.num_scales, aspect_ratios=model_config.aspect_ratios,
            anchor_scale=model_config.anchor_scale, nms_method=nms.method,
            iou_threshold=nms.iou_threshold, score_threshold=nms.score_threshold,
            sigma=nms.sigma, max_detections=nms.max_output_size,
            max_candidates=nms.max_nms_inputs,
        )

    def preprocess_batch(self, images):
        normalized, scale_to_original = letterbox(images, self.image_size)
        normalized = tf.ensure_shape(normalized, [None, *self.image_size, 3])
        return normalized, tf.fill(tf.shape(images)[:1], scale_to_original)

    def preprocess_single(self, image):
        return letterbox(image, self.image_size)

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
        :func:`efficientdet.postprocess.postprocess`.
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
