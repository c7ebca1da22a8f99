"""Target assignment: hand-made cases and a NumPy re-statement of the official matcher."""
import numpy as np
import pytest
import tensorflow as tf

from common.detection.anchors import AnchorSet
from common.detection.target_assigner import IGNORE, NEGATIVE, TargetAssigner, pairwise_iou


def _grid_anchors():
    # Level 3: 8x8 cells of 8 px, level 4: 4x4 cells of 16 px; one square anchor per cell.
    return AnchorSet.build(64, min_level=3, max_level=4, num_scales=1, aspect_ratios=(1.0,), anchor_scale=1.0)


def _flat(out, anchors, key):
    levels = range(anchors.min_level, anchors.max_level + 1)
    width = 1 if key == "cls" else 4
    return np.concatenate([out[f"{key}_targets_{l}"].numpy().reshape(-1, width) for l in levels]).squeeze(-1 if width == 1 else ())


def _np_iou(a, b):
    ih = np.maximum(0, np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]))
    iw = np.maximum(0, np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]))
    inter = ih * iw
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None] - inter
    return np.where(inter > 0, inter / np.where(inter > 0, union, 1), 0).astype(a.dtype)


def _np_official(anchors, boxes, classes, thr=0.5):
    """The official ArgMaxMatcher(0.5, 0.5, force_match_for_each_row=True) on unpadded boxes.

    IoU is computed in float32 in the same operation order: anchors fully inside
    a box tie exactly in real arithmetic, and argmax then follows rounding.
    """
    iou = _np_iou(boxes.astype(np.float32), anchors.astype(np.float32))
    match = np.where(iou.max(0) >= thr, iou.argmax(0), -1)
    for anchor in range(anchors.shape[0]):
        rows = np.nonzero(iou.argmax(1) == anchor)[0]
        if rows.size:
            match[anchor] = rows[0]
    labels = np.where(match >= 0, classes[np.maximum(match, 0)] - 1, -1)
    return match, labels


def test_exact_box_is_positive_with_zero_based_class_and_zero_codes():
    anchors = _grid_anchors()
    out = TargetAssigner(anchors, num_classes=5)(np.array([[8.0, 16.0, 16.0, 24.0]]), np.array([3]))
    cls = _flat(out, anchors, "cls")
    assert out["cls_targets_3"].numpy()[1, 2, 0] == 2
    assert (cls >= 0).sum() == 1 and float(out["num_positives"]) == 1.0
    np.testing.assert_allclose(out["box_targets_3"].numpy()[1, 2], np.zeros(4), atol=1e-6)
    assert (_flat(out, anchors, "box")[cls < 0] == 0).all()


def test_box_below_threshold_still_gets_its_best_anchor():
    anchors = _grid_anchors()
    box = np.array([[1.0, 1.0, 4.0, 12.0]], np.float32)  # best IoU 24/64 < 0.5
    iou = _np_iou(box, anchors.boxes)[0]
    assert iou.max() < 0.5
    out = TargetAssigner(anchors, num_classes=5)(box, np.array([4]))
    cls = _flat(out, anchors, "cls")
    assert np.nonzero(cls >= 0)[0].tolist() == [int(iou.argmax())]
    assert cls[iou.argmax()] == 3
    no_force = TargetAssigner(anchors, num_classes=5, force_match=False)(box, np.array([4]))
    assert float(no_force["num_positives"]) == 0.0


def test_padding_rows_are_ignored():
    anchors = _grid_anchors()
    boxes = np.array([[8.0, 16.0, 16.0, 24.0]], np.float32)
    padded = np.concatenate([boxes, -np.ones((5, 4), np.float32), np.zeros((2, 4), np.float32)])
    classes = np.array([3, -1, -1, -1, -1, -1, 0, 0])
    ta = TargetAssigner(anchors, num_classes=5)
    a, b = ta(boxes, np.array([3])), ta(padded, classes)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_only_padding_gives_all_negative():
    anchors = _grid_anchors()
    out = TargetAssigner(anchors, num_classes=5)(-np.ones((4, 4), np.float32), -np.ones(4))
    assert (_flat(out, anchors, "cls") == NEGATIVE).all()
    assert float(out["num_positives"]) == 0.0


def test_crowd_boxes_are_ignored_not_matched():
    anchors = _grid_anchors()
    crowd_box = np.array([[0.0, 0.0, 32.0, 32.0]], np.float32)
    person = np.array([[48.0, 48.0, 56.0, 56.0]], np.float32)
    boxes = np.concatenate([crowd_box, person])
    classes, is_crowd = np.array([1, 2]), np.array([True, False])

    out = TargetAssigner(anchors, num_classes=5)(boxes, classes, is_crowd)
    cls = _flat(out, anchors, "cls")
    assert float(out["num_positives"]) == 1.0 and cls[(cls >= 0)].tolist() == [1]
    inside = (anchors.boxes[:, 2] <= 32) & (anchors.boxes[:, 3] <= 32)
    assert (cls[inside] == IGNORE).all()
    assert (cls[~inside & (cls < 0)] == NEGATIVE).all()

    dropped = _flat(TargetAssigner(anchors, 5, crowd_handling="drop")(boxes, classes, is_crowd), anchors, "cls")
    assert (dropped[inside] == NEGATIVE).all()
    kept = _flat(TargetAssigner(anchors, 5, crowd_handling="keep")(boxes, classes, is_crowd), anchors, "cls")
    assert (kept == 0).sum() >= 1


def test_two_boxes_sharing_a_best_anchor_lower_index_wins():
    anchors = _grid_anchors()
    boxes = np.array([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 5.0, 5.0]], np.float32)  # both best on anchor 0
    cls = _flat(TargetAssigner(anchors, num_classes=5)(boxes, np.array([1, 2])), anchors, "cls")
    assert cls[0] == 0 and (cls >= 0).sum() == 1


def test_matches_official_matcher_on_random_boxes():
    anchors = AnchorSet.build(128, min_level=3, max_level=5, num_scales=3, aspect_ratios=(1.0, 2.0, 0.5), anchor_scale=4.0)
    rng = np.random.RandomState(0)
    ta = TargetAssigner(anchors, num_classes=10)
    for _ in range(5):
        n = 12
        yx = rng.uniform(0, 110, (n, 2))
        hw = rng.uniform(3, 90, (n, 2))
        boxes = np.concatenate([yx, yx + hw], 1).astype(np.float32)  # no clipping: it creates IoU ties
        classes = rng.randint(1, 11, n)
        match, labels = _np_official(anchors.boxes, boxes, classes)
        padded = np.concatenate([boxes, -np.ones((8, 4), np.float32)])
        out = ta(padded, np.concatenate([classes, -np.ones(8, int)]))
        np.testing.assert_array_equal(_flat(out, anchors, "cls"), labels)
        assert float(out["num_positives"]) == (match >= 0).sum()
        codes = _flat(out, anchors, "box")
        pos = match >= 0
        gt, an = boxes[match[pos]].astype(np.float64), anchors.boxes[pos].astype(np.float64)
        ha, wa = an[:, 2] - an[:, 0], an[:, 3] - an[:, 1]
        h, w = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
        expected = np.stack(
            [
                ((gt[:, 0] + gt[:, 2]) - (an[:, 0] + an[:, 2])) / 2 / ha,
                ((gt[:, 1] + gt[:, 3]) - (an[:, 1] + an[:, 3])) / 2 / wa,
                np.log(h / ha),
                np.log(w / wa),
            ],
            1,
        )
        np.testing.assert_allclose(codes[pos], expected, atol=1e-5)
        assert (codes[~pos] == 0).all()


def test_static_shapes_in_tf_data_and_tf_function():
    anchors = _grid_anchors()
    ta = TargetAssigner(anchors, num_classes=5)
    boxes = np.array([[8.0, 16.0, 16.0, 24.0], [-1, -1, -1, -1]], np.float32)
    ds = tf.data.Dataset.from_tensors((boxes, np.array([3, -1]), np.array([False, False])))
    ds = ds.map(lambda b, c, cr: ta(b, c, cr)).batch(2)
    spec = ds.element_spec
    assert spec["cls_targets_3"].shape.as_list() == [None, 8, 8, 1]
    assert spec["box_targets_4"].shape.as_list() == [None, 4, 4, 4]
    assert spec["cls_targets_3"].dtype == tf.int32

    fn = tf.function(ta, input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)])
    out = fn(boxes, np.array([3, -1], np.int32))
    assert out["cls_targets_4"].shape == (4, 4, 1) and out["num_positives"].shape == ()


def test_class_id_out_of_range_raises():
    ta = TargetAssigner(_grid_anchors(), num_classes=5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes=5"):
        ta(np.array([[0.0, 0.0, 8.0, 8.0]], np.float32), np.array([6]))


def test_pairwise_iou_hand_values():
    a = np.array([[0.0, 0.0, 10.0, 10.0]], np.float32)
    b = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]], np.float32)
    np.testing.assert_allclose(pairwise_iou(a, b).numpy(), [[1.0, 50.0 / 150.0, 0.0]], rtol=1e-6)
