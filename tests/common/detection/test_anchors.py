"""Anchor generation: exact parity with the official anchors and layout checks."""
from pathlib import Path

import numpy as np
import pytest

from common.detection.anchors import AnchorSet, feature_sizes, generate_anchors

FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "automl"


def test_d0_anchors_match_official_fixture():
    path = FIXTURES / "effdet_d0" / "anchors.npz"
    if not path.exists():
        pytest.skip(f"official fixture {path} not found (needs /work/shared/fixtures/automl)")
    expected = np.load(path)["anchors"]
    anchors = generate_anchors(512, 3, 7, 3, (1.0, 2.0, 0.5), 4.0)
    assert anchors.shape == (49104, 4) and anchors.dtype == np.float32
    np.testing.assert_allclose(anchors, expected, atol=1e-3, rtol=0)


def test_feature_sizes_round_up_for_non_divisible_sizes():
    assert feature_sizes((100, 37), 3) == [(100, 37), (50, 19), (25, 10), (13, 5)]


def test_layout_level_then_y_then_x_then_scale_aspect():
    aspects = (1.0, 2.0, 0.5)
    anchors = generate_anchors((64, 32), min_level=3, max_level=4, num_scales=2, aspect_ratios=aspects, anchor_scale=4.0)
    per_loc = 2 * 3
    # Level 3: 8 x 4 locations, level 4: 4 x 2.
    assert anchors.shape == ((8 * 4 + 4 * 2) * per_loc, 4)
    centers = np.stack([(anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2], 1)
    heights = anchors[:, 2] - anchors[:, 0]
    widths = anchors[:, 3] - anchors[:, 1]

    lvl3 = centers[: 8 * 4 * per_loc].reshape(8, 4, per_loc, 2)
    np.testing.assert_allclose(lvl3[:, :, 0, 0], np.repeat((4 + 8 * np.arange(8))[:, None], 4, 1))  # y varies by row
    np.testing.assert_allclose(lvl3[:, :, 0, 1], np.repeat((4 + 8 * np.arange(4))[None, :], 8, 0))  # x by column
    lvl4 = centers[8 * 4 * per_loc :].reshape(4, 2, per_loc, 2)
    np.testing.assert_allclose(lvl4[0, 0, 0], [8.0, 8.0])

    # Within a location: octave scale outer, aspect ratio inner; area kept by the aspect ratio.
    h, w = heights[:per_loc], widths[:per_loc]
    base = 4.0 * 8.0
    for octave in range(2):
        for j, aspect in enumerate(aspects):
            k = octave * 3 + j
            size = base * 2 ** (octave / 2)
            np.testing.assert_allclose(w[k] * h[k], size * size, rtol=1e-5)
            np.testing.assert_allclose(w[k] / h[k], aspect, rtol=1e-5)


def test_non_square_strides_follow_feature_sizes():
    # 100 px tall -> 13 rows on level 3, stride 100/13 (not 8), as the official generator does.
    anchors = AnchorSet.build((100, 64), min_level=3, max_level=3, num_scales=1, aspect_ratios=(1.0,), anchor_scale=1.0)
    assert anchors.level_sizes == ((13, 8),)
    boxes = anchors.boxes.reshape(13, 8, 4)
    stride_y = 100 / 13
    np.testing.assert_allclose(boxes[:, 0, 2] - boxes[:, 0, 0], stride_y, rtol=1e-5)
    np.testing.assert_allclose((boxes[:, 0, 0] + boxes[:, 0, 2]) / 2, stride_y / 2 + stride_y * np.arange(13), rtol=1e-5)
    assert anchors.num_anchors == sum(anchors.level_counts())


def test_per_level_anchor_scale_and_errors():
    a = generate_anchors(64, 3, 4, 1, (1.0,), anchor_scale=[1.0, 2.0])
    assert a[0, 2] - a[0, 0] == pytest.approx(8.0)
    assert a[64, 2] - a[64, 0] == pytest.approx(32.0)
    with pytest.raises(ValueError, match="anchor_scale"):
        generate_anchors(64, 3, 4, 1, (1.0,), anchor_scale=[1.0])
    with pytest.raises(ValueError, match="image_size"):
        generate_anchors("512x512")
