"""Faster R-CNN box coding relative to anchors.

The parameterisation of Ren et al. 2015 ("Faster R-CNN", Sec. 3.1.2, Eq. 2),
used by RetinaNet and EfficientDet for the box head:

    ty = (y - ya) / ha,  tx = (x - xa) / wa,  th = log(h / ha),  tw = log(w / wa)

where ``(y, x, h, w)`` are a box's centre and size and ``(ya, xa, ha, wa)`` the
anchor's. The official google/automl EfficientDet uses **no** scale factors
(``FasterRcnnBoxCoder()`` with ``scale_factors=None``), so that is the default
here; ``scale_factors=(10, 10, 5, 5)`` gives the classic Faster R-CNN variant.
Encoding clamps sizes at ``EPSILON`` (as the official coder does) so that
degenerate or tiny boxes give finite codes instead of ``log(0)`` or ``x / 0``.

Codes are ordered ``(ty, tx, th, tw)`` and boxes ``(ymin, xmin, ymax, xmax)``;
all functions broadcast over leading dimensions ``[..., 4]``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

EPSILON = 1e-8


def _center_size(boxes):
    ymin, xmin, ymax, xmax = tf.unstack(boxes, num=4, axis=-1)
    return (ymin + ymax) / 2.0, (xmin + xmax) / 2.0, ymax - ymin, xmax - xmin


def _check_scale_factors(scale_factors):
    if scale_factors is None:
        return None
    if len(scale_factors) != 4 or min(scale_factors) <= 0:
        raise ValueError(f"scale_factors {scale_factors!r} must be 4 positive numbers (ty, tx, th, tw).")
    return [float(s) for s in scale_factors]


def encode_boxes(
    boxes: tf.Tensor,
    anchors: tf.Tensor,
    scale_factors: Optional[Sequence[float]] = None,
) -> tf.Tensor:
    """Encodes boxes relative to anchors.

    Args:
        boxes: ``[..., 4]`` ``(ymin, xmin, ymax, xmax)``.
        anchors: ``[..., 4]`` anchors, broadcastable against ``boxes``.
        scale_factors: optional multipliers for ``(ty, tx, th, tw)``.

    Returns:
        ``[..., 4]`` codes ``(ty, tx, th, tw)`` in the dtype of ``boxes``.
    """
    factors = _check_scale_factors(scale_factors)
    boxes = tf.convert_to_tensor(boxes)
    anchors = tf.cast(anchors, boxes.dtype)
    yc_a, xc_a, h_a, w_a = _center_size(anchors)
    yc, xc, h, w = _center_size(boxes)
    eps = tf.constant(EPSILON, boxes.dtype)
    h_a = tf.maximum(h_a, eps)
    w_a = tf.maximum(w_a, eps)
    h = tf.maximum(h, eps)
    w = tf.maximum(w, eps)
    codes = [(yc - yc_a) / h_a, (xc - xc_a) / w_a, tf.math.log(h / h_a), tf.math.log(w / w_a)]
    if factors:
        codes = [c * f for c, f in zip(codes, factors)]
    return tf.stack(codes, axis=-1)


def decode_boxes(
    codes: tf.Tensor,
    anchors: tf.Tensor,
    scale_factors: Optional[Sequence[float]] = None,
    max_log_scale: Optional[float] = None,
) -> tf.Tensor:
    """Decodes ``(ty, tx, th, tw)`` codes back to boxes.

    Args:
        codes: ``[..., 4]`` codes, e.g. box-head outputs.
        anchors: ``[..., 4]`` anchors ``(ymin, xmin, ymax, xmax)``,
            broadcastable against ``codes``.
        scale_factors: the multipliers used when encoding, if any.
        max_log_scale: if set, ``th`` and ``tw`` are clipped to this value
            before ``exp`` so that wild predictions cannot overflow to ``inf``.
            The official decoder does not clip (``None``).

    Returns:
        ``[..., 4]`` boxes ``(ymin, xmin, ymax, xmax)`` in the dtype of ``codes``.
    """
    factors = _check_scale_factors(scale_factors)
    codes = tf.convert_to_tensor(codes)
    anchors = tf.cast(anchors, codes.dtype)
    yc_a, xc_a, h_a, w_a = _center_size(anchors)
    ty, tx, th, tw = tf.unstack(codes, num=4, axis=-1)
    if factors:
        ty, tx, th, tw = ty / factors[0], tx / factors[1], th / factors[2], tw / factors[3]
    if max_log_scale is not None:
        th = tf.minimum(th, max_log_scale)
        tw = tf.minimum(tw, max_log_scale)
    h = tf.exp(th) * h_a
    w = tf.exp(tw) * w_a
    yc = ty * h_a + yc_a
    xc = tx * w_a + xc_a
    return tf.stack([yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0], axis=-1)
