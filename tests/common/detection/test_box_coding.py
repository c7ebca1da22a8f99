"""Faster R-CNN box coder: hand values, round trips, tiny boxes."""
import numpy as np
import pytest

from common.detection.box_coding import decode_boxes, encode_boxes


def _random_boxes(rng, n, min_size=1.0, max_size=200.0):
    yx = rng.uniform(-50, 500, (n, 2))
    hw = rng.uniform(min_size, max_size, (n, 2))
    return np.concatenate([yx, yx + hw], 1).astype(np.float32)


def test_hand_values():
    anchor = np.array([[10.0, 20.0, 30.0, 60.0]], np.float32)  # centre (20, 40), h 20, w 40
    box = np.array([[20.0, 20.0, 60.0, 140.0]], np.float32)  # centre (40, 80), h 40, w 120
    codes = encode_boxes(box, anchor).numpy()
    np.testing.assert_allclose(codes, [[1.0, 1.0, np.log(2.0), np.log(3.0)]], rtol=1e-6)
    np.testing.assert_allclose(encode_boxes(anchor, anchor).numpy(), np.zeros((1, 4)), atol=1e-7)
    scaled = encode_boxes(box, anchor, scale_factors=(10, 10, 5, 5)).numpy()
    np.testing.assert_allclose(scaled, [[10.0, 10.0, 5 * np.log(2.0), 5 * np.log(3.0)]], rtol=1e-6)


@pytest.mark.parametrize("scale_factors", [None, (10.0, 10.0, 5.0, 5.0)])
def test_round_trip(scale_factors):
    rng = np.random.RandomState(0)
    boxes, anchors = _random_boxes(rng, 500), _random_boxes(rng, 500, 4.0, 300.0)
    codes = encode_boxes(boxes, anchors, scale_factors)
    back = decode_boxes(codes, anchors, scale_factors).numpy()
    np.testing.assert_allclose(back, boxes, atol=2e-3)


def test_round_trip_batched_broadcast():
    rng = np.random.RandomState(1)
    anchors = _random_boxes(rng, 64)
    boxes = np.stack([_random_boxes(rng, 64) for _ in range(3)])  # [3, 64, 4]
    codes = encode_boxes(boxes, anchors[None])
    assert codes.shape == (3, 64, 4)
    np.testing.assert_allclose(decode_boxes(codes, anchors[None]).numpy(), boxes, atol=2e-3)


def test_tiny_and_degenerate_boxes_stay_finite():
    anchors = np.array([[0.0, 0.0, 32.0, 32.0]] * 3, np.float32)
    boxes = np.array(
        [[16.0, 16.0, 16.001, 16.002], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 0.0]], np.float32
    )
    codes = encode_boxes(boxes, anchors).numpy()
    assert np.isfinite(codes).all()
    # A 1e-3 px box round-trips to within float32 resolution of its coordinates.
    back = decode_boxes(codes, anchors).numpy()
    np.testing.assert_allclose(back[0], boxes[0], atol=1e-4)
    # Zero-size boxes are clamped at EPSILON: log(1e-8 / 32) rather than -inf.
    np.testing.assert_allclose(codes[1, 2:], np.log(1e-8 / 32.0), rtol=1e-5)
    zero_anchor = encode_boxes(boxes[:1], np.zeros((1, 4), np.float32)).numpy()
    assert np.isfinite(zero_anchor).all()


def test_decode_clip_prevents_overflow():
    anchors = np.array([[0.0, 0.0, 10.0, 10.0]], np.float32)
    codes = np.array([[0.0, 0.0, 200.0, 200.0]], np.float32)
    assert not np.isfinite(decode_boxes(codes, anchors).numpy()).all()
    clipped = decode_boxes(codes, anchors, max_log_scale=np.log(1000.0 / 16)).numpy()
    assert np.isfinite(clipped).all()


def test_bad_scale_factors():
    with pytest.raises(ValueError, match="scale_factors"):
        encode_boxes(np.zeros((1, 4), np.float32), np.ones((1, 4), np.float32), scale_factors=(1, 1, 0, 1))
