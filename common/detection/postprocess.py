"""Detection post-processing: decode, pre-select, non-maximum suppression.

Turns the raw multi-level head outputs into at most ``max_detections`` boxes per
image, in graph mode with static output shapes so that it can live inside an
exported SavedModel / TFLite / ONNX graph. It follows the official google/automl
``postprocess.py`` (EfficientDet paper, Tan et al. 2020; soft-NMS of Bodla et
al. 2017, "Soft-NMS", Eq. 3, Gaussian penalty ``exp(-IoU^2 / sigma)``):

1. flatten levels (``[B, H_l, W_l, A * C]`` → ``[B, N, C]``, levels in order,
   the same order as the anchors);
2. pre-select the ``max_candidates`` anchors with the highest best-class score
   (``0`` keeps all; the official default keeps all, which gives the same
   result unless candidates beyond the cut would have survived NMS);
3. decode boxes (:func:`common.detection.box_coding.decode_boxes`), sigmoid scores;
4. NMS, one of the modes below;
5. clip (where the official code clips) to the network input, multiply by the
   per-image ``image_scales`` to get original-image pixels.

Modes (the official names ``gaussian`` and ``hard``, and ``soft``, are accepted
as aliases; the names live in :mod:`common.detection.nms`):

* ``global`` (official default): each anchor keeps only its best class; one
  class-agnostic Gaussian soft-NMS (sigma 0.5, score threshold 0.001).
  TensorFlow's ``NonMaxSuppressionV5`` penalises with ``exp(-IoU^2 / (2 s))``,
  so it is given ``s = sigma / 2``; in soft mode it ignores the IoU threshold.
  Boxes are clipped.
* ``global_hard``: the same with hard NMS (IoU > 0.5 suppresses). Clipped.
* ``per_class``: each anchor keeps its best class; NMS within each class, then
  the best ``max_detections`` over all classes. The official ``per_class``
  post-processing uses the configured method, Gaussian soft-NMS by default, so
  this is per-class soft-NMS (score threshold 0.001). Not clipped (as official).
* ``per_class_hard``: the same with hard NMS per class (implemented with
  ``tf.image.combined_non_max_suppression`` on the best-class scores). Not
  clipped.
* ``combined``: ``tf.image.combined_non_max_suppression`` on all classes of
  each anchor (an anchor may yield several classes). Clipped.

**Unrolled form** (``unroll=True``): the same modes without any ``WHILE``
op. ``tf.map_fn`` over the images (and, for ``per_class``, over the classes)
becomes a Python loop over a *static* batch size, so the graph holds one
builtin NMS op per image (per class). TensorFlow 2.18's TFLite int8
calibrator crashes on ``WHILE`` loops; this form lets an int8 TFLite detector
keep its NMS in the file. The results are identical (same kernels, same
order); only the graph differs.

Outputs: boxes ``[B, D, 4]`` ``(ymin, xmin, ymax, xmax)``, scores ``[B, D]``,
1-based int32 classes ``[B, D]``, int32 ``num_detections`` ``[B]``, sorted by
score; rows past ``num_detections`` are all zero.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Optional, Sequence, Union

import tensorflow as tf

from common.detection.box_coding import decode_boxes
from common.detection.image_size import ImageSize, parse_image_size
from common.detection.nms import canonical_nms_method
LevelOutputs = Union[Sequence[tf.Tensor], Mapping[int, tf.Tensor]]


class Detections(NamedTuple):
    """Post-processed detections of a batch (shapes in the module docstring)."""

    boxes: tf.Tensor
    scores: tf.Tensor
    classes: tf.Tensor
    num_detections: tf.Tensor


def _ordered(outputs: LevelOutputs):
    if isinstance(outputs, Mapping):
        return [outputs[k] for k in sorted(outputs)]
    return list(outputs)


def merge_level_outputs(class_outputs: LevelOutputs, box_outputs: LevelOutputs, num_classes: int):
    """Flattens per-level head outputs into per-anchor tensors.

    Args:
        class_outputs: per level ``[B, H_l, W_l, A * num_classes]`` (a sequence
            ``min_level`` first, or a dict keyed by level).
        box_outputs: per level ``[B, H_l, W_l, A * 4]``.
        num_classes: classes per anchor.

    Returns:
        float32 logits ``[B, N, num_classes]`` and codes ``[B, N, 4]``.
    """
    class_outputs, box_outputs = _ordered(class_outputs), _ordered(box_outputs)
    # A static batch stays static (the unrolled post-processing loops over it).
    batch = class_outputs[0].shape[0] or tf.shape(class_outputs[0])[0]
    logits = [tf.reshape(tf.cast(c, tf.float32), [batch, -1, num_classes]) for c in class_outputs]
    codes = [tf.reshape(tf.cast(b, tf.float32), [batch, -1, 4]) for b in box_outputs]
    return tf.concat(logits, 1), tf.concat(codes, 1)


def _zero_padding(det: Detections) -> Detections:
    num_rows = tf.shape(det.scores)[1]
    valid = tf.range(num_rows)[None, :] < det.num_detections[:, None]
    return Detections(
        boxes=tf.where(valid[..., None], det.boxes, 0.0),
        scores=tf.where(valid, det.scores, 0.0),
        classes=tf.where(valid, det.classes, 0),
        num_detections=det.num_detections,
    )


def _detections_spec(max_detections):
    """What one image's NMS returns: boxes ``[D, 4]``, scores ``[D]``, classes ``[D]``
    and the number of valid detections (``D = max_detections``)."""
    return (
        tf.TensorSpec([max_detections, 4], tf.float32),
        tf.TensorSpec([max_detections], tf.float32),
        tf.TensorSpec([max_detections], tf.int32),
        tf.TensorSpec([], tf.int32),
    )


def _map_images(fn, elems, spec, unroll):
    """``fn`` over the leading axis of ``elems``: ``tf.map_fn``, or with ``unroll`` a
    Python loop (the axis must then be static), results stacked either way."""
    if not unroll:
        return tf.map_fn(fn, elems, fn_output_signature=spec)
    size = elems[0].shape[0] if isinstance(elems, tuple) else elems.shape[0]
    if size is None:
        raise ValueError("postprocess(unroll=True) needs a static batch size; export with a "
                         "fixed batch (e.g. model_inspect.py --batch_size 1) or use unroll=False.")
    if isinstance(elems, tuple):
        results = [fn(tuple(e[i] for e in elems)) for i in range(size)]
    else:
        results = [fn(elems[i]) for i in range(size)]
    return tuple(tf.stack(parts) for parts in zip(*results))


def _single_class_nms(boxes, scores, classes, max_detections, iou_threshold, score_threshold,
                      soft_sigma, unroll=False):
    """Class-agnostic (soft-)NMS per image. ``boxes [B, K, 4]``, ``scores [B, K]``."""

    def one_image(args):
        b, s, c = args
        idx, kept, valid = tf.raw_ops.NonMaxSuppressionV5(
            boxes=b,
            scores=s,
            max_output_size=max_detections,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            soft_nms_sigma=soft_sigma / 2.0,
            pad_to_max_output_size=True,
        )
        return tf.gather(b, idx), kept, tf.gather(c, idx), valid

    return _map_images(one_image, (boxes, scores, classes), _detections_spec(max_detections),
                       unroll)


def _per_class_soft_nms(
    boxes, scores, classes, num_classes, max_detections, iou_threshold, score_threshold, sigma,
    unroll=False,
):
    """Soft-NMS inside each class, then the top ``max_detections`` of all classes.

    ``boxes [B, K, 4]``, ``scores [B, K]`` and ``classes [B, K]`` (0-based) hold
    one class per anchor.
    """

    def one_image(args):
        b, s, c = args

        def one_class(cid):
            masked = tf.where(tf.equal(c, cid), s, -1.0)  # other classes fall below any threshold
            idx, kept, valid = tf.raw_ops.NonMaxSuppressionV5(
                boxes=b,
                scores=masked,
                max_output_size=max_detections,
                iou_threshold=iou_threshold,
                score_threshold=max(score_threshold, -0.5),
                soft_nms_sigma=sigma / 2.0,
                pad_to_max_output_size=True,
            )
            real = tf.range(max_detections) < valid
            return idx, tf.where(real, kept, float("-inf")), valid

        idx, kept, valid = _map_images(
            one_class,
            tf.range(num_classes, dtype=tf.int32),
            (
                tf.TensorSpec([max_detections], tf.int32),
                tf.TensorSpec([max_detections], tf.float32),
                tf.TensorSpec([], tf.int32),
            ),
            unroll,
        )
        top_scores, order = tf.math.top_k(tf.reshape(kept, [-1]), k=max_detections, sorted=True)
        picked = tf.gather(tf.reshape(idx, [-1]), order)
        picked_classes = order // max_detections
        total = tf.minimum(tf.reduce_sum(valid), max_detections)
        return tf.gather(b, picked), top_scores, picked_classes, total

    return _map_images(one_image, (boxes, scores, classes), _detections_spec(max_detections),
                       unroll)


def _combined_nms(boxes, scores, max_detections, iou_threshold, score_threshold):
    """Per-class hard NMS. ``boxes [B, K, 4]``, ``scores [B, K, C]``."""
    out_boxes, out_scores, out_classes, valid = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :],
        scores,
        max_output_size_per_class=max_detections,
        max_total_size=max_detections,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        pad_per_class=False,
        clip_boxes=False,
    )
    return out_boxes, out_scores, tf.cast(out_classes, tf.int32), valid


def postprocess(
    class_outputs: LevelOutputs,
    box_outputs: LevelOutputs,
    anchor_boxes,
    image_size: ImageSize,
    num_classes: int,
    mode: str = "global",
    image_scales=None,
    max_detections: int = 100,
    max_candidates: int = 5000,
    iou_threshold: float = 0.5,
    score_threshold: Optional[float] = None,
    sigma: float = 0.5,
    unroll: bool = False,
) -> Detections:
    """Raw head outputs → final detections (see the module docstring).

    Args:
        class_outputs: per level ``[B, H_l, W_l, A * num_classes]`` logits.
        box_outputs: per level ``[B, H_l, W_l, A * 4]`` codes.
        anchor_boxes: ``[N, 4]`` anchors of the network input.
        image_size: network input ``(height, width)`` (clipping range).
        num_classes: number of classes.
        mode: ``global``, ``global_hard``, ``per_class``, ``per_class_hard`` or
            ``combined``, or an alias (:data:`common.detection.nms.ALIASES`).
        image_scales: optional ``[B]`` (or scalar) factor from network-input
            pixels to original-image pixels (original size / resized size).
        max_detections: detections kept per image.
        max_candidates: anchors kept before NMS; ``0`` or ``None`` keeps all.
        iou_threshold: hard-NMS IoU threshold (unused by soft-NMS).
        score_threshold: minimum score; ``None`` uses the official defaults
            (0.001 for the soft-NMS modes ``global`` and ``per_class``, no
            threshold for the others).
        sigma: Gaussian soft-NMS sigma in the paper's convention (soft modes).
        unroll: build the loop-free form (module docstring); needs a static
            batch size. ``per_class_hard`` / ``combined`` have no loop anyway.

    Returns:
        A :class:`Detections` of static shapes ``[B, max_detections, 4]``,
        ``[B, max_detections]``, ``[B, max_detections]``, ``[B]``.
    """
    mode = canonical_nms_method(mode)
    if score_threshold is None:
        score_threshold = 0.001 if mode in ("global", "per_class") else float("-inf")
    height, width = parse_image_size(image_size)

    logits, codes = merge_level_outputs(class_outputs, box_outputs, num_classes)
    anchors = tf.cast(tf.convert_to_tensor(anchor_boxes), tf.float32)
    best_logit = tf.reduce_max(logits, axis=-1)  # [B, N]
    num_anchors = logits.shape[1]
    if max_candidates and (num_anchors is None or max_candidates < num_anchors):
        k = max_candidates if num_anchors is not None else tf.minimum(max_candidates, tf.shape(logits)[1])
        _, keep = tf.math.top_k(best_logit, k=k, sorted=True)
        logits = tf.gather(logits, keep, batch_dims=1)
        codes = tf.gather(codes, keep, batch_dims=1)
        anchors = tf.gather(anchors, keep)  # [B, K, 4]
    else:
        anchors = anchors[None]
    boxes = decode_boxes(codes, anchors)  # [B, K, 4]

    if mode in ("global", "global_hard"):
        scores = tf.sigmoid(tf.reduce_max(logits, axis=-1))
        classes = tf.argmax(logits, axis=-1, output_type=tf.int32)
        soft_sigma = sigma if mode == "global" else 0.0
        out_boxes, out_scores, out_classes, valid = _single_class_nms(
            boxes, scores, classes, max_detections, iou_threshold, score_threshold, soft_sigma,
            unroll,
        )
    elif mode == "per_class":
        scores = tf.sigmoid(tf.reduce_max(logits, axis=-1))
        classes = tf.argmax(logits, axis=-1, output_type=tf.int32)
        out_boxes, out_scores, out_classes, valid = _per_class_soft_nms(
            boxes, scores, classes, num_classes, max_detections, iou_threshold, score_threshold, sigma,
            unroll,
        )
    elif mode == "per_class_hard":
        best = tf.one_hot(tf.argmax(logits, axis=-1), num_classes, on_value=True, off_value=False)
        # Other classes of an anchor get -1, strictly below any usable threshold.
        scores = tf.where(best, tf.sigmoid(logits), -1.0)
        out_boxes, out_scores, out_classes, valid = _combined_nms(
            boxes, scores, max_detections, iou_threshold, max(score_threshold, -0.5)
        )
    else:
        out_boxes, out_scores, out_classes, valid = _combined_nms(
            boxes, tf.sigmoid(logits), max_detections, iou_threshold, score_threshold
        )

    if mode not in ("per_class", "per_class_hard"):
        limits = tf.constant([height, width, height, width], tf.float32)
        out_boxes = tf.clip_by_value(out_boxes, 0.0, limits)
    if image_scales is not None:
        scales = tf.cast(tf.convert_to_tensor(image_scales), tf.float32)
        scales = tf.reshape(scales, [-1, 1, 1]) if scales.shape.rank else scales
        out_boxes = out_boxes * scales
    det = Detections(out_boxes, out_scores, out_classes + 1, tf.cast(valid, tf.int32))
    return _zero_padding(det)
