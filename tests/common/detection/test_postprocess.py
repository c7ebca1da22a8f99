"""Post-processing / NMS against a NumPy reference and the official detections."""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from common.detection.anchors import generate_anchors
from common.detection.box_coding import decode_boxes
from common.detection.postprocess import postprocess

FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "automl"
SIZE = 100  # network input of the synthetic cases


# ---------------------------------------------------------------- NumPy reference
def _iou(box, boxes):
    """IoU of one box with many, as TensorFlow's NMS kernels define it."""
    def norm(b):
        return np.minimum(b[..., 0], b[..., 2]), np.minimum(b[..., 1], b[..., 3]), np.maximum(b[..., 0], b[..., 2]), np.maximum(b[..., 1], b[..., 3])

    y0, x0, y1, x1 = norm(box.astype(np.float64))
    Y0, X0, Y1, X1 = norm(boxes.astype(np.float64))
    a, A = (y1 - y0) * (x1 - x0), (Y1 - Y0) * (X1 - X0)
    inter = np.maximum(np.minimum(y1, Y1) - np.maximum(y0, Y0), 0) * np.maximum(np.minimum(x1, X1) - np.maximum(x0, X0), 0)
    iou = inter / np.maximum(a + A - inter, 1e-12)
    return np.where((a <= 0) | (A <= 0), 0.0, iou)


def np_hard_nms(boxes, scores, max_out, iou_thr, score_thr):
    order = sorted(np.nonzero(scores > score_thr)[0], key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if len(keep) == max_out:
            break
        if not keep or (_iou(boxes[i], boxes[keep]) <= iou_thr).all():
            keep.append(i)
    return np.array(keep, int), scores[keep]


def np_soft_nms(boxes, scores, max_out, sigma, score_thr):
    """Greedy Gaussian soft-NMS, penalty exp(-IoU^2 / sigma) (Bodla et al. 2017)."""
    current = scores.astype(np.float64).copy()
    alive = current > score_thr
    keep, kept = [], []
    while len(keep) < max_out and alive.any():
        i = int(np.argmax(np.where(alive, current, -np.inf)))
        keep.append(i)
        kept.append(current[i])
        alive[i] = False
        current = current * np.exp(-_iou(boxes[i], boxes) ** 2 / sigma)
        alive &= current > score_thr
    return np.array(keep, int), np.array(kept)


def _merge_by_score(parts, max_out):
    """parts: list of (boxes, scores, classes); returns the best max_out by score."""
    boxes = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 4))
    scores = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    classes = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, int)
    order = np.argsort(-scores, kind="stable")[:max_out]
    return boxes[order], scores[order], classes[order]


def np_postprocess(logits, boxes, mode, max_out=100, score_thr=None, clip=SIZE):
    """One image. logits [N, C], boxes [N, 4] (decoded). Returns boxes, scores, 1-based classes."""
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    best, cls = probs.max(1), probs.argmax(1)
    if mode == "global":
        thr = 0.001 if score_thr is None else score_thr
        keep, sc = np_soft_nms(boxes, best, max_out, 0.5, thr)
        out = (boxes[keep], sc, cls[keep])
    elif mode == "global_hard":
        keep, sc = np_hard_nms(boxes, best, max_out, 0.5, -np.inf if score_thr is None else score_thr)
        out = (boxes[keep], sc, cls[keep])
    elif mode in ("per_class", "per_class_hard", "combined"):
        parts = []
        for c in range(logits.shape[1]):
            if mode == "combined":
                idx, s = np.arange(len(boxes)), probs[:, c]
            else:
                idx = np.nonzero(cls == c)[0]
                s = best[idx]
            if mode == "per_class":
                keep, sc = np_soft_nms(boxes[idx], s, max_out, 0.5, 0.001 if score_thr is None else score_thr)
            else:
                keep, sc = np_hard_nms(boxes[idx], s, max_out, 0.5, -np.inf if score_thr is None else score_thr)
            parts.append((boxes[idx][keep], sc, np.full(len(keep), c)))
        out = _merge_by_score(parts, max_out)
    if mode in ("global", "global_hard", "combined"):
        out = (np.clip(out[0], 0, clip), out[1], out[2])
    return out[0], out[1], out[2] + 1


# ---------------------------------------------------------------- helpers
def _random_case(seed, batch=2, n=300, num_classes=4):
    rng = np.random.RandomState(seed)
    yx = rng.uniform(-5, 95, (n, 2))
    anchors = np.concatenate([yx, yx + rng.uniform(8, 30, (n, 2))], 1).astype(np.float32)
    logits = rng.normal(-2.0, 1.5, (batch, n, 1, num_classes)).astype(np.float32)  # one level: H=n, W=1, A=1
    codes = rng.normal(0, 0.1, (batch, n, 1, 4)).astype(np.float32)
    return logits, codes, anchors


def _check_against_reference(det, logits, codes, anchors, mode, score_thr=None):
    decoded = decode_boxes(codes.reshape(codes.shape[0], -1, 4), anchors[None]).numpy()
    for b in range(logits.shape[0]):
        eb, es, ec = np_postprocess(logits[b].reshape(-1, logits.shape[-1]), decoded[b], mode, score_thr=score_thr)
        k = len(es)
        assert int(det.num_detections[b]) == k
        np.testing.assert_allclose(det.scores[b, :k].numpy(), es, atol=1e-5)
        np.testing.assert_array_equal(det.classes[b, :k].numpy(), ec)
        np.testing.assert_allclose(det.boxes[b, :k].numpy(), eb, atol=1e-4)
        assert (det.scores[b, k:].numpy() == 0).all() and (det.classes[b, k:].numpy() == 0).all()
        assert (det.boxes[b, k:].numpy() == 0).all()


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("mode", ["global", "global_hard", "per_class", "per_class_hard", "combined"])
def test_modes_match_numpy_reference(mode):
    logits, codes, anchors = _random_case(0)
    det = postprocess([logits], [codes], anchors, SIZE, num_classes=4, mode=mode, max_candidates=0)
    _check_against_reference(det, logits, codes, anchors, mode)


@pytest.mark.parametrize("mode", ["global", "global_hard", "per_class", "per_class_hard", "combined"])
def test_fewer_candidates_than_max_detections_pad_with_zeros(mode):
    logits, codes, anchors = _random_case(6, n=40)
    det = postprocess([logits], [codes], anchors, SIZE, num_classes=4, mode=mode, score_threshold=0.1)
    assert 0 < int(det.num_detections.numpy().max()) < 100
    _check_against_reference(det, logits, codes, anchors, mode, score_thr=0.1)


def test_soft_and_hard_nms_really_differ():
    logits, codes, anchors = _random_case(1)
    soft = postprocess([logits], [codes], anchors, SIZE, 4, mode="global", max_candidates=0)
    hard = postprocess([logits], [codes], anchors, SIZE, 4, mode="global_hard", max_candidates=0)
    assert not np.allclose(soft.scores.numpy(), hard.scores.numpy())


def test_candidate_preselection_equals_nms_on_top_k():
    logits, codes, anchors = _random_case(2, batch=1)
    k = 60
    det = postprocess([logits], [codes], anchors, SIZE, 4, mode="global_hard", max_candidates=k)
    top = np.argsort(-logits[0, :, 0].max(-1), kind="stable")[:k]
    ref = postprocess([logits[:, top]], [codes[:, top]], anchors[top], SIZE, 4, mode="global_hard", max_candidates=0)
    for got, want in zip(det, ref):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)


@pytest.mark.parametrize("mode", ["global", "global_hard", "per_class", "per_class_hard", "combined"])
def test_batch_with_an_empty_image(mode):
    logits, codes, anchors = _random_case(3)
    logits[1] = -20.0  # sigmoid ~ 2e-9: nothing above the threshold
    det = postprocess([logits], [codes], anchors, SIZE, 4, mode=mode, max_candidates=0, score_threshold=0.001)
    assert det.boxes.shape == (2, 100, 4) and det.scores.shape == (2, 100)
    assert det.classes.shape == (2, 100) and det.num_detections.shape == (2,)
    assert int(det.num_detections[0]) > 0 and int(det.num_detections[1]) == 0
    assert not det.boxes[1].numpy().any() and not det.scores[1].numpy().any() and not det.classes[1].numpy().any()
    _check_against_reference(det, logits, codes, anchors, mode, score_thr=0.001)


@pytest.mark.parametrize("mode", ["global", "per_class", "combined"])
def test_graph_mode_static_shapes_and_image_scales(mode):
    logits, codes, anchors = _random_case(4)
    fn = tf.function(
        lambda c, b, s: postprocess([c], [b], anchors, SIZE, 4, mode=mode, image_scales=s, max_candidates=200),
        input_signature=[
            tf.TensorSpec([None, 300, 1, 4], tf.float32),
            tf.TensorSpec([None, 300, 1, 4], tf.float32),
            tf.TensorSpec([None], tf.float32),
        ],
    )
    shapes = [t.shape.as_list() for t in fn.get_concrete_function().structured_outputs]
    assert shapes == [[None, 100, 4], [None, 100], [None, 100], [None]]
    scaled = fn(logits, codes, np.array([1.0, 2.5], np.float32))
    plain = postprocess([logits], [codes], anchors, SIZE, 4, mode=mode, max_candidates=200)
    np.testing.assert_allclose(scaled.boxes[0].numpy(), plain.boxes[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(scaled.boxes[1].numpy(), 2.5 * plain.boxes[1].numpy(), atol=1e-4)
    assert scaled.classes.dtype == tf.int32 and scaled.num_detections.dtype == tf.int32


def test_unknown_mode_raises():
    logits, codes, anchors = _random_case(5, batch=1)
    with pytest.raises(ValueError, match="NMS mode"):
        postprocess([logits], [codes], anchors, SIZE, 4, mode="fast")


@pytest.mark.parametrize("mode", ["global", "global_hard", "per_class", "combined"])
def test_official_d0_detections(mode):
    root = FIXTURES / "effdet_d0"
    if not (root / "raw_outputs.npz").exists():
        pytest.skip(f"official fixtures not found under {root} (needs /work/shared/fixtures/automl)")
    raw, expected = np.load(root / "raw_outputs.npz"), np.load(root / "detections.npz")
    cls = [raw[f"class_l{l}"] for l in range(3, 8)]
    box = [raw[f"box_l{l}"] for l in range(3, 8)]
    anchors = generate_anchors(512)
    det = postprocess(cls, box, anchors, 512, num_classes=90, mode=mode, image_scales=np.ones(1, np.float32))
    np.testing.assert_array_equal(det.num_detections.numpy(), expected[f"{mode}_valid"])
    np.testing.assert_allclose(det.boxes.numpy(), expected[f"{mode}_boxes"], atol=1e-2, rtol=0)
    np.testing.assert_allclose(det.scores.numpy(), expected[f"{mode}_scores"], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(det.classes.numpy(), expected[f"{mode}_classes"].astype(np.int32))


@pytest.mark.parametrize("mode", ["global", "global_hard", "per_class"])
def test_unrolled_form_has_no_loop_and_equals_map_fn_form(mode):
    logits, codes, anchors = _random_case(7)
    spec = tf.TensorSpec(logits.shape, tf.float32)  # static batch of 2
    fn = tf.function(lambda c, b: postprocess([c], [b], anchors, SIZE, 4, mode=mode, unroll=True),
                     input_signature=[spec, spec])
    ops = {op.type for op in fn.get_concrete_function().graph.get_operations()}
    assert not ops & {"While", "StatelessWhile"}, ops
    looped = postprocess([logits], [codes], anchors, SIZE, 4, mode=mode)
    for got, want in zip(fn(logits, codes), looped):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    _check_against_reference(fn(logits, codes), logits, codes, anchors, mode)


def test_unrolled_form_needs_a_static_batch():
    logits, codes, anchors = _random_case(8)
    spec = tf.TensorSpec([None, *logits.shape[1:]], tf.float32)
    fn = tf.function(lambda c, b: postprocess([c], [b], anchors, SIZE, 4, unroll=True),
                     input_signature=[spec, spec])
    with pytest.raises(ValueError, match="static batch size.*--batch_size 1"):
        fn.get_concrete_function()


@pytest.mark.parametrize("mode", ["global", "global_hard"])
def test_unrolled_official_d0_detections(mode):
    # The loop-free form (what an int8 TFLite detector carries) against the official
    # detections of the fixture raw outputs, traced with a static batch as in the export.
    root = FIXTURES / "effdet_d0"
    if not (root / "raw_outputs.npz").exists():
        pytest.skip(f"official fixtures not found under {root} (needs /work/shared/fixtures/automl)")
    raw, expected = np.load(root / "raw_outputs.npz"), np.load(root / "detections.npz")
    cls = [tf.constant(raw[f"class_l{l}"]) for l in range(3, 8)]
    box = [tf.constant(raw[f"box_l{l}"]) for l in range(3, 8)]
    anchors = generate_anchors(512)
    fn = tf.function(lambda c, b: postprocess(c, b, anchors, 512, num_classes=90, mode=mode,
                                              unroll=True))
    det = fn(cls, box)
    ops = {op.type for op in fn.get_concrete_function(cls, box).graph.get_operations()}
    assert "NonMaxSuppressionV5" in ops and not ops & {"While", "StatelessWhile"}
    np.testing.assert_array_equal(det.num_detections.numpy(), expected[f"{mode}_valid"])
    np.testing.assert_allclose(det.boxes.numpy(), expected[f"{mode}_boxes"], atol=1e-2, rtol=0)
    np.testing.assert_allclose(det.scores.numpy(), expected[f"{mode}_scores"], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(det.classes.numpy(), expected[f"{mode}_classes"].astype(np.int32))
