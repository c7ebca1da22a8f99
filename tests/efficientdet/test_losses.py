"""Focal, Huber and IoU losses against NumPy re-computations of the official formulas."""
import math

import numpy as np
import pytest
import tensorflow as tf

from efficientdet.losses import detection_loss, focal_loss, huber, iou_loss


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_focal(logits, labels, alpha, gamma, smoothing):
    p = _np_sigmoid(logits)
    p_t = labels * p + (1 - labels) * (1 - p)
    alpha_t = labels * alpha + (1 - labels) * (1 - alpha)
    y = labels * (1 - smoothing) + 0.5 * smoothing
    ce = np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))
    return alpha_t * (1 - p_t) ** gamma * ce


def _np_huber(x, delta):
    return np.where(np.abs(x) <= delta, 0.5 * x**2, delta * np.abs(x) - 0.5 * delta**2)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_focal_loss_matches_numpy(smoothing):
    rng = np.random.RandomState(0)
    logits = rng.normal(0, 3, (4, 7)).astype(np.float32)
    labels = (rng.uniform(size=(4, 7)) > 0.7).astype(np.float32)
    got = focal_loss(logits, labels, 0.25, 1.5, smoothing).numpy()
    np.testing.assert_allclose(got, _np_focal(logits.astype(np.float64), labels, 0.25, 1.5, smoothing), rtol=1e-5, atol=1e-7)


def test_focal_loss_hand_value():
    # logit 0: p = 0.5, positive: 0.25 * 0.5**1.5 * log 2.
    assert focal_loss([0.0], [1.0]).numpy()[0] == pytest.approx(0.25 * 0.5**1.5 * math.log(2.0), rel=1e-6)
    assert focal_loss([0.0], [0.0]).numpy()[0] == pytest.approx(0.75 * 0.5**1.5 * math.log(2.0), rel=1e-6)


def test_huber_hand_values():
    got = huber(np.array([0.05, -0.05, 0.3, -1.0], np.float32), delta=0.1).numpy()
    np.testing.assert_allclose(got, [0.00125, 0.00125, 0.1 * 0.3 - 0.005, 0.1 - 0.005], rtol=1e-5)


def _make_batch(rng, levels=((4, 4), (2, 2)), batch=2, anchors=2, classes=3):
    cls_out, box_out, targets = [], [], {}
    for i, (h, w) in enumerate(levels):
        level = 3 + i
        cls_out.append(rng.normal(0, 2, (batch, h, w, anchors * classes)).astype(np.float32))
        box_out.append(rng.normal(0, 0.3, (batch, h, w, anchors * 4)).astype(np.float32))
        labels = rng.choice([-2, -1, -1, -1, 0, 1, 2], size=(batch, h, w, anchors)).astype(np.int32)
        codes = rng.normal(0, 0.2, (batch, h, w, anchors, 4)).astype(np.float32)
        codes[labels < 0] = 0.0
        targets[f"cls_targets_{level}"] = labels
        targets[f"box_targets_{level}"] = codes.reshape(batch, h, w, anchors * 4)
    pos = sum((targets[f"cls_targets_{3 + i}"] >= 0).reshape(batch, -1).sum(1) for i in range(len(levels)))
    targets["num_positives"] = pos.astype(np.float32)
    return cls_out, box_out, targets


def test_detection_loss_matches_numpy():
    rng = np.random.RandomState(0)
    cls_out, box_out, targets = _make_batch(rng)
    out = detection_loss(cls_out, box_out, targets, num_classes=3)
    normalizer = targets["num_positives"].sum() + 1.0
    cls_sum, box_sum = 0.0, 0.0
    for i, level in enumerate((3, 4)):
        labels = targets[f"cls_targets_{level}"]
        logits = cls_out[i].reshape(labels.shape + (3,)).astype(np.float64)
        one_hot = (labels[..., None] == np.arange(3)).astype(np.float64)
        loss = _np_focal(logits, one_hot, 0.25, 1.5, 0.0)
        cls_sum += (loss * (labels != -2)[..., None]).sum()
        err = box_out[i].astype(np.float64) - targets[f"box_targets_{level}"]
        box_sum += (_np_huber(err, 0.1).reshape(labels.shape + (4,)) * (labels >= 0)[..., None]).sum()
    expected_cls, expected_box = cls_sum / normalizer, box_sum / (normalizer * 4)
    assert out["cls_loss"].numpy() == pytest.approx(expected_cls, rel=1e-5)
    assert out["box_loss"].numpy() == pytest.approx(expected_box, rel=1e-5)
    assert out["box_iou_loss"].numpy() == 0.0
    assert out["total_loss"].numpy() == pytest.approx(expected_cls + 50.0 * expected_box, rel=1e-5)


def test_detection_loss_is_float32_with_float16_outputs_and_dict_inputs():
    rng = np.random.RandomState(1)
    cls_out, box_out, targets = _make_batch(rng)
    ref = detection_loss(cls_out, box_out, targets, num_classes=3)
    half = detection_loss(
        {3: tf.cast(cls_out[0], tf.float16), 4: tf.cast(cls_out[1], tf.float16)},
        {3: tf.cast(box_out[0], tf.float16), 4: tf.cast(box_out[1], tf.float16)},
        targets,
        num_classes=3,
    )
    assert half["total_loss"].dtype == tf.float32
    assert half["total_loss"].numpy() == pytest.approx(ref["total_loss"].numpy(), rel=2e-3)


def test_detection_loss_gradients_are_finite_with_no_positives():
    rng = np.random.RandomState(2)
    cls_out, box_out, targets = _make_batch(rng)
    for level in (3, 4):
        targets[f"cls_targets_{level}"][:] = -1
        targets[f"box_targets_{level}"][:] = 0.0
    targets["num_positives"][:] = 0.0
    variables = [tf.Variable(x) for x in cls_out + box_out]
    with tf.GradientTape() as tape:
        out = detection_loss(variables[:2], variables[2:], targets, num_classes=3, iou_loss_type="ciou",
                             anchor_boxes=_anchors_for_batch())
    grads = tape.gradient(out["total_loss"], variables)
    assert out["box_loss"].numpy() == 0.0
    assert all(np.isfinite(g.numpy()).all() for g in grads)


def _anchors_for_batch(levels=((4, 4), (2, 2)), anchors=2):
    n = sum(h * w * anchors for h, w in levels)
    rng = np.random.RandomState(3)
    yx = rng.uniform(0, 50, (n, 2))
    return np.concatenate([yx, yx + rng.uniform(5, 30, (n, 2))], 1).astype(np.float32)


def _np_decode(codes, anchors):
    ha, wa = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    yc, xc = anchors[:, 0] + ha / 2, anchors[:, 1] + wa / 2
    h, w = np.exp(codes[..., 2]) * ha, np.exp(codes[..., 3]) * wa
    y, x = codes[..., 0] * ha + yc, codes[..., 1] * wa + xc
    return np.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], -1)


def _np_giou(p, t):
    inter = np.maximum(0, np.minimum(p[..., 2], t[..., 2]) - np.maximum(p[..., 0], t[..., 0])) * np.maximum(
        0, np.minimum(p[..., 3], t[..., 3]) - np.maximum(p[..., 1], t[..., 1])
    )
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area(p) + area(t) - inter
    encl = (np.maximum(p[..., 2], t[..., 2]) - np.minimum(p[..., 0], t[..., 0])) * (
        np.maximum(p[..., 3], t[..., 3]) - np.minimum(p[..., 1], t[..., 1])
    )
    return inter / union - (encl - union) / encl


def test_iou_loss_term_matches_numpy_giou():
    rng = np.random.RandomState(4)
    cls_out, box_out, targets = _make_batch(rng)
    anchors = _anchors_for_batch()
    out = detection_loss(cls_out, box_out, targets, num_classes=3, iou_loss_type="giou", iou_loss_weight=2.0,
                         anchor_boxes=anchors)
    codes = np.concatenate([b.reshape(2, -1, 4) for b in box_out], 1).astype(np.float64)
    tcodes = np.concatenate([targets[f"box_targets_{l}"].reshape(2, -1, 4) for l in (3, 4)], 1).astype(np.float64)
    pos = np.concatenate([targets[f"cls_targets_{l}"].reshape(2, -1) for l in (3, 4)], 1) >= 0
    loss = 1 - _np_giou(_np_decode(codes, anchors), _np_decode(tcodes, anchors))
    expected = (loss * pos).sum() / ((targets["num_positives"].sum() + 1) * 4)
    assert out["box_iou_loss"].numpy() == pytest.approx(expected, rel=1e-4)
    assert out["total_loss"].numpy() == pytest.approx(
        out["cls_loss"].numpy() + 50 * out["box_loss"].numpy() + 2.0 * expected, rel=1e-5
    )


def test_iou_family_hand_values():
    a = np.array([[0.0, 0.0, 2.0, 2.0]], np.float32)
    b = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)  # IoU 1/3, hull 2x3, centres 1 apart, diag^2 13
    assert iou_loss(a, a, "giou").numpy()[0] == pytest.approx(0.0, abs=1e-7)
    assert iou_loss(a, b, "iou").numpy()[0] == pytest.approx(2 / 3, rel=1e-6)
    assert iou_loss(a, b, "giou").numpy()[0] == pytest.approx(1 - (1 / 3 - 0 / 6), rel=1e-6)
    assert iou_loss(a, b, "diou").numpy()[0] == pytest.approx(1 - (1 / 3 - 1 / 13), rel=1e-6)
    assert iou_loss(a, b, "ciou").numpy()[0] == pytest.approx(1 - (1 / 3 - 1 / 13), rel=1e-6)  # same aspect: v = 0
    c = np.array([[0.0, 0.0, 1.0, 4.0]], np.float32)  # w/h 4 vs 1
    v = 4 / math.pi**2 * (math.atan(4.0) - math.atan(1.0)) ** 2
    iou = (1.0 * 2.0) / (4.0 + 4.0 - 2.0)  # intersection 1x2, union 4 + 4 - 2
    diou = iou - ((0.5 - 1.0) ** 2 + (2.0 - 1.0) ** 2) / (2.0**2 + 4.0**2)
    alpha = v / (1 - iou + v)
    assert iou_loss(a, c, "ciou").numpy()[0] == pytest.approx(1 - (diou - alpha * v), rel=1e-5)
    with pytest.raises(ValueError, match="iou_type"):
        iou_loss(a, b, "wiou")


def test_detection_loss_needs_anchors_for_iou_loss():
    cls_out, box_out, targets = _make_batch(np.random.RandomState(5))
    with pytest.raises(ValueError, match="anchor_boxes"):
        detection_loss(cls_out, box_out, targets, num_classes=3, iou_loss_type="giou")
