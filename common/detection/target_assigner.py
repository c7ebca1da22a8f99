"""Anchor target assignment for detector training (runs inside tf.data).

Follows the RetinaNet assignment rule (Lin et al. 2017, Sec. 4, "anchors are
assigned to ground-truth object boxes using an IoU threshold of 0.5; and to
background if their IoU is in [0, 0.4)") with the thresholds of the official
google/automl EfficientDet (``AnchorLabeler``: ``ArgMaxMatcher`` with matched
and unmatched threshold both 0.5, ``force_match_for_each_row=True``, the
unscaled Faster R-CNN box coder):

* each anchor takes the ground-truth box of highest IoU; IoU >= 0.5 is a
  positive, IoU < 0.5 a negative (``matched_threshold`` and
  ``unmatched_threshold`` may differ; in between is "ignore");
* every ground-truth box also claims its best anchor, even below the threshold
  (force match). Two boxes claiming one anchor: the lower index wins, as in the
  official matcher. Boxes whose best IoU is 0 (outside every anchor) claim
  nothing, whereas the official matcher would claim anchor 0.

The implementation is vectorised with static output shapes: the inputs are the
fixed-size padded box lists of the input pipeline (``max_instances_per_image``
rows), so the whole step is a handful of dense ``[M, N]`` ops.

Label convention (the same as the official one, so ``tf.one_hot`` of a target
directly gives the focal-loss labels):

* ``>= 0``: positive, the **0-based** class (dataset class id minus 1);
* ``-1`` (:data:`NEGATIVE`): background;
* ``-2`` (:data:`IGNORE`): excluded from the classification loss.

Padding rows (class id <= 0, e.g. the pipeline's -1 padding) never match. Crowd
boxes (``is_crowd``), with the default ``crowd_handling="ignore"``, never make
positives; instead anchors that are not positive and lie mostly inside a crowd
box (intersection over anchor area >= ``crowd_ioa_threshold``) are ignored.
``"drop"`` removes crowd boxes altogether (the official
``skip_crowd_during_training=True``: such anchors become negatives) and
``"keep"`` treats them as ordinary boxes.
"""
from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf

from common.detection.anchors import AnchorSet
from common.detection.box_coding import encode_boxes

NEGATIVE = -1
IGNORE = -2
_CROWD_MODES = ("ignore", "drop", "keep")


def pairwise_iou(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
    """IoU of every box in ``boxes1`` with every box in ``boxes2``.

    Args:
        boxes1: ``[M, 4]`` ``(ymin, xmin, ymax, xmax)``.
        boxes2: ``[N, 4]``.

    Returns:
        ``[M, N]`` float IoU; 0 where the boxes do not intersect.
    """
    inter = _pairwise_intersection(boxes1, boxes2)
    area1 = _area(boxes1)[:, None]
    area2 = _area(boxes2)[None, :]
    union = area1 + area2 - inter
    return tf.where(inter > 0.0, inter / tf.where(inter > 0.0, union, 1.0), 0.0)


def _area(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _pairwise_intersection(boxes1, boxes2):
    ymin1, xmin1, ymax1, xmax1 = tf.unstack(boxes1[:, None, :], num=4, axis=-1)
    ymin2, xmin2, ymax2, xmax2 = tf.unstack(boxes2[None, :, :], num=4, axis=-1)
    height = tf.maximum(0.0, tf.minimum(ymax1, ymax2) - tf.maximum(ymin1, ymin2))
    width = tf.maximum(0.0, tf.minimum(xmax1, xmax2) - tf.maximum(xmin1, xmin2))
    return height * width


def match_anchors(
    anchor_boxes: tf.Tensor,
    gt_boxes: tf.Tensor,
    gt_classes: tf.Tensor,
    is_crowd: Optional[tf.Tensor] = None,
    matched_threshold: float = 0.5,
    unmatched_threshold: float = 0.5,
    force_match: bool = True,
    crowd_handling: str = "ignore",
    crowd_ioa_threshold: float = 0.5,
):
    """Matches anchors to ground truth (flat, all levels at once).

    Args:
        anchor_boxes: ``[N, 4]`` anchors in pixels.
        gt_boxes: ``[M, 4]`` ground-truth boxes in the same pixel frame, padded.
        gt_classes: ``[M]`` 1-based class ids; ``<= 0`` marks padding.
        is_crowd: optional ``[M]`` bool/int crowd flags.
        matched_threshold: IoU at or above which an anchor is positive.
        unmatched_threshold: IoU below which an anchor is negative.
        force_match: give every ground-truth box its best anchor.
        crowd_handling: ``"ignore"``, ``"drop"`` or ``"keep"`` (module doc).
        crowd_ioa_threshold: anchor-area fraction inside a crowd box that makes
            a non-positive anchor ignored (``"ignore"`` mode).

    Returns:
        ``(match, labels)``: int32 ``[N]`` index of the matched ground-truth row
        (``-1`` if none) and int32 ``[N]`` labels in the module's convention.
    """
    if crowd_handling not in _CROWD_MODES:
        raise ValueError(f"crowd_handling {crowd_handling!r} must be one of {_CROWD_MODES}.")
    if unmatched_threshold > matched_threshold:
        raise ValueError("unmatched_threshold must be <= matched_threshold.")
    anchor_boxes = tf.cast(anchor_boxes, tf.float32)
    # One always-invalid row keeps every reduction over M non-empty.
    gt_boxes = tf.concat([tf.reshape(tf.cast(gt_boxes, tf.float32), [-1, 4]), tf.zeros([1, 4])], 0)
    gt_classes = tf.concat([tf.reshape(tf.cast(gt_classes, tf.int32), [-1]), [0]], 0)
    if is_crowd is None:
        crowd = tf.zeros_like(gt_classes, tf.bool)
    else:
        crowd = tf.concat([tf.reshape(tf.cast(is_crowd, tf.bool), [-1]), [False]], 0)
    present = gt_classes > 0
    if crowd_handling == "keep":
        valid = present
        crowd_rows = tf.zeros_like(present)
    else:
        valid = tf.logical_and(present, tf.logical_not(crowd))
        crowd_rows = tf.logical_and(present, crowd)

    iou = pairwise_iou(gt_boxes, anchor_boxes)  # [M, N]
    iou_valid = tf.where(valid[:, None], iou, -1.0)
    best_iou = tf.reduce_max(iou_valid, axis=0)  # [N]
    best_gt = tf.argmax(iou_valid, axis=0, output_type=tf.int32)
    match = tf.where(best_iou >= matched_threshold, best_gt, -1)

    if force_match:
        num_anchors = tf.shape(anchor_boxes)[0]
        best_anchor = tf.argmax(iou_valid, axis=1, output_type=tf.int32)  # [M]
        claims = tf.logical_and(valid, tf.reduce_max(iou_valid, axis=1) > 0.0)
        # Rows that claim nothing go to an extra segment that is sliced off.
        segment = tf.where(claims, best_anchor, num_anchors)
        rows = tf.range(tf.shape(gt_classes)[0], dtype=tf.int32)
        forced = tf.math.unsorted_segment_min(rows, segment, num_anchors + 1)[:-1]
        forced_mask = forced < tf.shape(gt_classes)[0]
        match = tf.where(forced_mask, forced, match)

    positive = match >= 0
    labels = tf.where(positive, tf.gather(gt_classes, tf.maximum(match, 0)) - 1, NEGATIVE)
    between = tf.logical_and(best_iou >= unmatched_threshold, best_iou < matched_threshold)
    labels = tf.where(tf.logical_and(tf.logical_not(positive), between), IGNORE, labels)
    if crowd_handling == "ignore":
        inter = _pairwise_intersection(gt_boxes, anchor_boxes)
        anchor_area = tf.maximum(_area(anchor_boxes), 1e-8)[None, :]
        ioa = tf.where(crowd_rows[:, None], inter / anchor_area, 0.0)
        in_crowd = tf.reduce_max(ioa, axis=0) >= crowd_ioa_threshold
        labels = tf.where(tf.logical_and(tf.logical_not(positive), in_crowd), IGNORE, labels)
    return match, labels


class TargetAssigner:
    """Builds the dense per-level training targets of one image.

    Args:
        anchors: the :class:`~common.detection.anchors.AnchorSet` of the network input.
        num_classes: number of classes; ground-truth ids must be in
            ``1 … num_classes``.
        matched_threshold, unmatched_threshold, force_match, crowd_handling,
        crowd_ioa_threshold: see :func:`match_anchors`.

    Calling it with ``boxes [M, 4]`` (pixels of the network input),
    ``classes [M]`` and optional ``is_crowd [M]`` returns a dict:

    * ``cls_targets_{l}``: int32 ``[H_l, W_l, A]`` labels (module convention);
    * ``box_targets_{l}``: float32 ``[H_l, W_l, A * 4]`` ``(ty, tx, th, tw)``
      codes, zero on non-positive anchors;
    * ``num_positives``: float32 scalar, number of positive anchors.
    """

    def __init__(
        self,
        anchors: AnchorSet,
        num_classes: int,
        matched_threshold: float = 0.5,
        unmatched_threshold: float = 0.5,
        force_match: bool = True,
        crowd_handling: str = "ignore",
        crowd_ioa_threshold: float = 0.5,
    ):
        if crowd_handling not in _CROWD_MODES:
            raise ValueError(f"crowd_handling {crowd_handling!r} must be one of {_CROWD_MODES}.")
        self.anchors = anchors
        self.num_classes = int(num_classes)
        self._kwargs = dict(
            matched_threshold=matched_threshold,
            unmatched_threshold=unmatched_threshold,
            force_match=force_match,
            crowd_handling=crowd_handling,
            crowd_ioa_threshold=crowd_ioa_threshold,
        )

    @classmethod
    def from_config(cls, model_config, anchors: Optional[AnchorSet] = None, **kwargs) -> "TargetAssigner":
        """The assigner of a detector config.

        Args:
            model_config: an object with ``num_classes`` and the anchor
                attributes read by :meth:`AnchorSet.from_config`.
            anchors: the detector's anchors if already built; by default
                ``AnchorSet.from_config(model_config)``.
            **kwargs: matching options of the constructor (thresholds,
                ``crowd_handling`` …).

        Returns:
            A :class:`TargetAssigner` over the model's anchors and classes.
        """
        anchors = AnchorSet.from_config(model_config) if anchors is None else anchors
        return cls(anchors, model_config.num_classes, **kwargs)

    def assign_flat(self, boxes, classes, is_crowd=None):
        """Like ``__call__`` but returns flat ``[N]`` labels, ``[N, 4]`` codes
        and the scalar positive count."""
        classes = tf.reshape(tf.cast(classes, tf.int32), [-1])
        check = tf.debugging.assert_less_equal(
            classes,
            self.num_classes,
            message=(
                f"a ground-truth class id is larger than num_classes={self.num_classes}; "
                "fix the dataset's label map or model.num_classes"
            ),
        )
        with tf.control_dependencies([check]):
            anchor_boxes = tf.constant(self.anchors.boxes, tf.float32)
            match, labels = match_anchors(anchor_boxes, boxes, classes, is_crowd, **self._kwargs)
        gt = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
        gt = tf.concat([gt, tf.zeros([1, 4])], 0)  # match may point at nothing past M-1
        positive = match >= 0
        matched = tf.gather(gt, tf.maximum(match, 0))
        codes = encode_boxes(matched, anchor_boxes)
        codes = tf.where(positive[:, None], codes, 0.0)
        num_positives = tf.reduce_sum(tf.cast(positive, tf.float32))
        return labels, codes, num_positives

    def __call__(self, boxes, classes, is_crowd=None) -> Dict[str, tf.Tensor]:
        labels, codes, num_positives = self.assign_flat(boxes, classes, is_crowd)
        return self.unpack(labels, codes, num_positives)

    def unpack(self, labels, codes, num_positives) -> Dict[str, tf.Tensor]:
        """Splits flat targets into the per-level dict described above."""
        out = {}
        counts = self.anchors.level_counts()
        label_parts = tf.split(labels, counts)
        code_parts = tf.split(codes, counts)
        a = self.anchors.anchors_per_location
        for i, (h, w) in enumerate(self.anchors.level_sizes):
            level = self.anchors.min_level + i
            out[f"cls_targets_{level}"] = tf.reshape(label_parts[i], [h, w, a])
            out[f"box_targets_{level}"] = tf.reshape(code_parts[i], [h, w, a * 4])
        out["num_positives"] = num_positives
        return out
