"""The NumPy post-processing (for non-TensorFlow backends) against the TF one.

Both functions get identical inputs; detections must agree (number, classes,
scores within 1e-5, boxes within 1e-3 px). For ``per_class_hard`` / ``combined``
TF's order among equal scores is unspecified, so those modes are compared as
sets. On x86-64 Linux (TF's CPU wheel: Eigen on 8-float packets, glibc) the
port reproduces TF bit for bit, which one test holds it to.
"""
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from common.detection.anchors import AnchorSet, generate_anchors
from common.detection.box_coding import decode_boxes
from common.detection.postprocess import postprocess
from common.detection.postprocess_numpy import (
    Detections,
    decode_boxes_numpy,
    postprocess_numpy,
    tf_exp,
    tf_sigmoid,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
MODES = ["global", "global_hard", "per_class", "per_class_hard", "combined"]
ORDERED_MODES = ("global", "global_hard", "per_class")  # rows compared one by one
SIZE = 128
NUM_CLASSES = 8
ANCHORS = AnchorSet.build((SIZE, SIZE))  # 3069 anchors, P3-P7, 9 per location
SCALES = np.array([1.0, 2.5], np.float32)
X86_LINUX = sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def _raw_outputs(seed, batch=2, ties=False):
    """Per-level class logits and box codes of the ANCHORS layout (seeded)."""
    rng = np.random.RandomState(seed)
    a = ANCHORS.anchors_per_location
    cls = [rng.normal(-3.0, 1.5, (batch, h, w, a * NUM_CLASSES)) for h, w in ANCHORS.level_sizes]
    box = [rng.normal(0.0, 0.3, (batch, h, w, a * 4)) for h, w in ANCHORS.level_sizes]
    if ties:  # a few distinct logits: many equal scores
        cls = [np.round(c * 2.0) / 2.0 for c in cls]
    return [c.astype(np.float32) for c in cls], [b.astype(np.float32) for b in box]


def _both(cls, box, **kwargs):
    ref = postprocess(cls, box, ANCHORS.boxes, SIZE, NUM_CLASSES, **kwargs)
    got = postprocess_numpy(cls, box, ANCHORS.boxes, SIZE, NUM_CLASSES, **kwargs)
    return Detections(*(np.asarray(t) for t in ref)), got


def _assert_parity(ref, got, mode):
    for name, want, have in zip(Detections._fields, ref, got):
        assert isinstance(have, np.ndarray), name
        assert have.shape == want.shape and have.dtype == want.dtype, (name, have.shape, have.dtype)
    np.testing.assert_array_equal(got.num_detections, ref.num_detections)
    for b, n in enumerate(ref.num_detections):
        assert not got.boxes[b, n:].any() and not got.scores[b, n:].any() and not got.classes[b, n:].any()
        if mode in ORDERED_MODES:
            np.testing.assert_array_equal(got.classes[b, :n], ref.classes[b, :n])
            np.testing.assert_allclose(got.scores[b, :n], ref.scores[b, :n], atol=1e-5, rtol=0)
            np.testing.assert_allclose(got.boxes[b, :n], ref.boxes[b, :n], atol=1e-3, rtol=0)
        else:
            _assert_same_set(ref, got, b, n)


def _assert_same_set(ref, got, b, n):
    """Every TF row matches a distinct NumPy row of the same class and box."""
    np.testing.assert_allclose(np.sort(got.scores[b, :n]), np.sort(ref.scores[b, :n]), atol=1e-5, rtol=0)
    unmatched = list(range(n))
    for i in range(n):
        match = [j for j in unmatched if got.classes[b, j] == ref.classes[b, i]
                 and np.abs(got.boxes[b, j] - ref.boxes[b, i]).max() <= 1e-3
                 and abs(got.scores[b, j] - ref.scores[b, i]) <= 1e-5]
        assert match, f"image {b}: TF row {i} (class {ref.classes[b, i]}) has no NumPy twin"
        unmatched.remove(match[0])


# ---------------------------------------------------------------- parity with TF
@pytest.mark.parametrize("max_candidates", [0, 500])
@pytest.mark.parametrize("mode", MODES)
def test_matches_tf_postprocess(mode, max_candidates):
    cls, box = _raw_outputs(0)
    ref, got = _both(cls, box, mode=mode, image_scales=SCALES, max_candidates=max_candidates)
    assert ref.num_detections.min() > 0
    _assert_parity(ref, got, mode)


@pytest.mark.parametrize("mode", MODES)
def test_matches_tf_with_many_equal_scores(mode):
    # Equal scores: NonMaxSuppressionV5 breaks ties by index; the combined kernel
    # by its heap and sort order, which the port replays.
    cls, box = _raw_outputs(1, ties=True)
    ref, got = _both(cls, box, mode=mode, image_scales=SCALES, max_candidates=1000)
    _assert_parity(ref, got, mode)


@pytest.mark.parametrize("mode", MODES)
def test_matches_tf_with_other_settings(mode):
    # dict outputs, scalar image scale, fewer detections, other thresholds and sigma,
    # fewer candidates than max_detections, and an image with nothing above 0.05.
    cls, box = _raw_outputs(2)
    cls[0][1], cls[1][1] = -30.0, -30.0
    for c in cls[2:]:
        c[1] = -30.0
    kwargs = dict(mode=mode, image_scales=1.5, max_detections=20, max_candidates=15,
                  iou_threshold=0.4, sigma=0.3, score_threshold=0.05)
    levels = range(3, 8)
    ref = postprocess(dict(zip(levels, cls)), dict(zip(levels, box)), ANCHORS.boxes, (SIZE, SIZE),
                      NUM_CLASSES, **kwargs)
    got = postprocess_numpy(dict(zip(levels, cls)), dict(zip(levels, box)), ANCHORS.boxes,
                            (SIZE, SIZE), NUM_CLASSES, **kwargs)
    ref = Detections(*(np.asarray(t) for t in ref))
    assert 0 < ref.num_detections[0] and ref.num_detections[1] == 0
    assert mode == "combined" or ref.num_detections[0] <= 15  # one class per anchor
    _assert_parity(ref, got, mode)


@pytest.mark.skipif(not X86_LINUX, reason="bit-exact float32 emulation targets TF's x86-64 Linux CPU wheel")
@pytest.mark.parametrize("mode", MODES)
def test_bit_exact_on_x86_64_linux(mode):
    cls, box = _raw_outputs(3, ties=mode in ("per_class_hard", "combined"))
    ref, got = _both(cls, box, mode=mode, image_scales=SCALES, max_candidates=800)
    for name, want, have in zip(Detections._fields, ref, got):
        np.testing.assert_array_equal(have, want, err_msg=name)


# ---------------------------------------------------------------- building blocks
def test_sigmoid_exp_and_decode_follow_tf():
    rng = np.random.RandomState(4)
    for n in (1, 5, 8, 13, 4099):  # packets of 8 plus a scalar tail
        x = rng.normal(-2.0, 6.0, n).astype(np.float32)
        np.testing.assert_allclose(tf_sigmoid(x), tf.sigmoid(x).numpy(), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(tf_exp(x), tf.exp(x).numpy(), rtol=1e-6, atol=1e-12)
        if X86_LINUX:
            np.testing.assert_array_equal(tf_sigmoid(x), tf.sigmoid(x).numpy())
            np.testing.assert_array_equal(tf_exp(x), tf.exp(x).numpy())
    codes = rng.normal(0.0, 0.5, (2, ANCHORS.num_anchors, 4)).astype(np.float32)
    want = decode_boxes(codes, ANCHORS.boxes[None]).numpy()
    have = decode_boxes_numpy(codes, ANCHORS.boxes[None])
    assert have.dtype == np.float32 and have.shape == want.shape
    np.testing.assert_allclose(have, want, atol=1e-4, rtol=0)
    scaled = decode_boxes(codes, ANCHORS.boxes, scale_factors=(10, 10, 5, 5)).numpy()
    np.testing.assert_allclose(decode_boxes_numpy(codes, ANCHORS.boxes, (10, 10, 5, 5)), scaled,
                               atol=1e-4, rtol=0)


def test_refuses_what_tf_refuses():
    cls, box = _raw_outputs(5, batch=1)
    with pytest.raises(ValueError, match="NMS mode"):
        postprocess_numpy(cls, box, ANCHORS.boxes, SIZE, NUM_CLASSES, mode="fast")
    with pytest.raises(ValueError, match="iou_threshold"):
        postprocess_numpy(cls, box, ANCHORS.boxes, SIZE, NUM_CLASSES, mode="combined", iou_threshold=1.5)


def test_import_does_not_load_tensorflow():
    code = ("import sys; import common.detection.postprocess_numpy; "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'); "
            "assert not loaded, loaded; print('ok')")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ---------------------------------------------------------------- official detections
@pytest.mark.parametrize("mode", ["global", "global_hard", "per_class", "combined"])
def test_official_d0_detections(automl_fixtures, mode):
    # The same check as the TF post-processing's: the official google/automl
    # detections of the fixture's raw D0 outputs (49104 anchors, 90 classes).
    root = automl_fixtures / "effdet_d0"
    if not (root / "raw_outputs.npz").exists():
        pytest.skip(f"raw_outputs.npz not found under {root}")
    raw, expected = np.load(root / "raw_outputs.npz"), np.load(root / "detections.npz")
    cls = [raw[f"class_l{level}"] for level in range(3, 8)]
    box = [raw[f"box_l{level}"] for level in range(3, 8)]
    det = postprocess_numpy(cls, box, generate_anchors(512), 512, num_classes=90, mode=mode,
                            image_scales=np.ones(1, np.float32))
    np.testing.assert_array_equal(det.num_detections, expected[f"{mode}_valid"])
    np.testing.assert_array_equal(det.classes, expected[f"{mode}_classes"].astype(np.int32))
    np.testing.assert_allclose(det.boxes, expected[f"{mode}_boxes"], atol=1e-2, rtol=0)
    np.testing.assert_allclose(det.scores, expected[f"{mode}_scores"], atol=1e-4, rtol=0)
