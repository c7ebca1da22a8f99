"""Detection task: loss and detection decoding wrapped around the pure EfficientDet network."""
import tensorflow as tf

from efficientdet.anchors import AnchorSet
from efficientdet.losses import detection_loss
from efficientdet.postprocess import postprocess


class DetectionTask:
    """Focal + box (+ IoU) loss and post-processing for one ``DetectionModelConfig``.

    Args:
        model_config: the detector's config (classes, levels, anchors, loss, NMS).
    """

    def __init__(self, model_config):
        self.config = model_config
        self.anchors = AnchorSet.build(
            model_config.image_size,
            min_level=model_config.min_level,
            max_level=model_config.max_level,
            num_scales=model_config.num_scales,
            aspect_ratios=model_config.aspect_ratios,
            anchor_scale=model_config.anchor_scale,
        )
        self.anchor_boxes = tf.constant(self.anchors.boxes, tf.float32)

    def compute_loss(self, outputs, labels):
        """Args: network outputs dict, labels with per-level targets. Returns float32 scalars."""
        loss = self.config.loss
        losses = detection_loss(
            outputs["class_outputs"],
            outputs["box_outputs"],
            labels,
            num_classes=self.config.num_classes,
            alpha=loss.alpha,
            gamma=loss.gamma,
            label_smoothing=loss.label_smoothing,
            delta=loss.delta,
            box_loss_weight=loss.box_loss_weight,
            iou_loss_type=loss.iou_loss_type,
            iou_loss_weight=loss.iou_loss_weight,
            anchor_boxes=self.anchor_boxes if loss.iou_loss_type else None,
        )
        if "num_dropped_boxes" in labels:
            # Boxes the random crop removed, logged so the loss is never silent about them.
            losses["dropped_boxes"] = tf.reduce_sum(tf.cast(labels["num_dropped_boxes"], tf.float32))
        return losses

    def detect(self, outputs, image_scales=None):
        """Raw outputs → detections in original-image pixels (config's NMS settings)."""
        nms = self.config.nms
        mode = {"gaussian": "global", "hard": "global_hard"}.get(nms.method, nms.method)
        return postprocess(
            outputs["class_outputs"],
            outputs["box_outputs"],
            self.anchor_boxes,
            self.config.image_size,
            self.config.num_classes,
            mode=mode,
            image_scales=image_scales,
            max_detections=nms.max_output_size,
            max_candidates=nms.max_nms_inputs,
            iou_threshold=nms.iou_threshold,
            score_threshold=nms.score_threshold,
            sigma=nms.sigma,
        )
