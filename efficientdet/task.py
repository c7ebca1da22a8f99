"""Detection task: loss and detection decoding wrapped around the pure EfficientDet network."""
import tensorflow as tf

from common.detection.anchors import AnchorSet
from common.detection.nms import NmsSettings
from common.detection.postprocess import postprocess
from efficientdet.losses import detection_loss


class DetectionTask:
    """Focal + box (+ IoU) loss and post-processing for one ``DetectionModelConfig``.

    Args:
        model_config: the detector's config (classes, levels, anchors, loss, NMS).
    """

    def __init__(self, model_config):
        self.config = model_config
        self.anchors = AnchorSet.from_config(model_config)
        self.nms = NmsSettings.from_config(model_config.nms)
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
        return postprocess(
            outputs["class_outputs"],
            outputs["box_outputs"],
            self.anchor_boxes,
            self.config.image_size,
            self.config.num_classes,
            image_scales=image_scales,
            **self.nms.postprocess_kwargs(),
        )
