"""NumPy twin of :mod:`common.detection.postprocess` for non-TensorFlow backends.

:func:`postprocess_numpy` turns the raw multi-level EfficientDet head outputs
into detections exactly as :func:`common.detection.postprocess.postprocess`
does (same steps, modes, defaults, output shapes and dtypes; see that module's
docstring for the method), but with NumPy only, so that a JAX (or any other
non-TensorFlow) Keras backend can run it without importing TensorFlow. This
module imports no TensorFlow, directly or indirectly; the tests in
``tests/common/detection/test_postprocess_numpy.py`` run both functions on the
same inputs and hold the two together.

The TensorFlow kernels are reimplemented, not approximated:

* candidate pre-selection: ``tf.math.top_k`` (equal values: lower index first)
  is a stable descending argsort; ``tf.argmax`` takes the first maximum;
* ``NonMaxSuppressionV5`` (``global``, ``global_hard``, ``per_class``): a
  priority queue ordered by (score descending, index ascending) over the
  candidates scoring above the threshold; Gaussian soft-NMS multiplies a
  popped candidate's score by ``exp(scale * iou * iou)``, ``scale = -0.5 /
  soft_nms_sigma``, for each box selected since the candidate was last
  examined (newest first, stopping once the score is at or below the
  threshold); an unchanged score selects it, a lowered one above the threshold
  re-queues it. In soft mode the IoU threshold plays no part. With sigma 0 the
  kernel is greedy hard NMS (``IoU > iou_threshold`` suppresses);
* ``CombinedNonMaxSuppression`` (``per_class_hard``, ``combined``): greedy hard
  NMS per class (at most ``min(max_detections, K)`` boxes each), then all
  classes merged by score and cut to ``max_detections``;
* IoU in float32 with min/max-normalised corners; a box of area <= 0 has IoU 0.

Float32 arithmetic is reproduced operation by operation, including
TensorFlow's x86 CPU ``exp`` and ``sigmoid`` (Eigen's vectorised polynomials
on packets of 8 floats, the C library's ``expf`` for the last ``size % 8``
elements and for the soft-NMS penalty, denormals flushed to zero), so that
scores, and therefore the order of near-equal candidates, agree bit for bit
with TensorFlow 2.18's x86-64 Linux wheel (the tests check this). Elsewhere
(another Eigen, FMA builds such as ARM, another C library) the two can differ
by float32 roundings, and then rarely in the order of near-equal scores. Equal
scores:
``NonMaxSuppressionV5`` breaks ties by index (deterministic, reproduced);
``CombinedNonMaxSuppression`` uses a score-only ``std::priority_queue`` per
class and an unstable ``std::sort`` for the merge, whose order among equal
scores is unspecified by TensorFlow. When (and only when) equal scores reach
the part of the queue or the merge that matters, this module replays
libstdc++'s heap and introsort algorithms (what the Linux TensorFlow wheels
use); otherwise a stable sort gives the same result faster.

Outputs (:class:`Detections`, NumPy arrays): boxes float32 ``[B, D, 4]``
``(ymin, xmin, ymax, xmax)`` in original-image pixels when ``image_scales`` is
given, scores float32 ``[B, D]``, 1-based int32 classes ``[B, D]``, int32
``num_detections`` ``[B]``; rows sorted by score, rows past
``num_detections`` all zero (``D = max_detections``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import heapq
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from common.detection.image_size import ImageSize, parse_image_size
from common.detection.nms import canonical_nms_method

LevelOutputs = Union[Sequence[Any], Mapping[int, Any]]

_F32 = np.float32
_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32; below it TF flushes to 0
_PACKET = 8  # floats per Eigen packet in TensorFlow's x86 CPU build (AVX)


class Detections(NamedTuple):
    """Post-processed detections of a batch (NumPy arrays).

    Attributes:
        boxes: float32 ``[B, D, 4]`` ``(ymin, xmin, ymax, xmax)``.
        scores: float32 ``[B, D]``, descending within an image.
        classes: int32 ``[B, D]``, 1-based; 0 in padded rows.
        num_detections: int32 ``[B]``, valid rows per image.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    num_detections: np.ndarray


# ------------------------------------------------------------------ float32 numerics
_EXPF = []  # [callable or None], loaded on first use


def _c_expf():
    """The C library's ``expf`` (what TensorFlow's scalar code calls), or ``None``."""
    if not _EXPF:
        fn = None
        for name in ("libm.so.6", None):
            try:
                fn = ctypes.CDLL(name or ctypes.util.find_library("m")).expf
            except (OSError, AttributeError, TypeError):
                continue
            fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
            break
        _EXPF.append(fn)
    return _EXPF[0]


def _flush_denormals(values: np.ndarray) -> np.ndarray:
    """Sets float32 results below the normal range to 0 (TF runs with FTZ), in place."""
    values[np.abs(values) < _TINY] = 0.0
    return values


def _libm_expf(x) -> np.ndarray:
    """``expf`` of the C library, elementwise, float32 (any shape).

    A correctly rounded ``exp`` (via float64) agrees with glibc's ``expf``
    except where the exact value lies within about ``2**-33`` (relative) of a
    float32 rounding boundary; only those few elements are passed to the C
    function itself (when it can be loaded).
    """
    x = np.asarray(x, _F32)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        exact = np.exp(x.astype(np.float64))
        out = exact.astype(_F32)
        fn = _c_expf()
        if fn is not None and out.size:
            # Distance of the exact value from the float32 rounding boundary on its side
            # (halfway between the rounded value and its neighbour).
            rounded = out.astype(np.float64)
            side = np.where(exact < rounded, _F32(-np.inf), _F32(np.inf))
            boundary = (rounded + np.nextafter(out, side).astype(np.float64)) / 2
            near = (np.abs(exact - boundary) < exact * 2.0**-30) & np.isfinite(exact)
            if near.any():
                flat_x, flat_out = x.reshape(-1), out.reshape(-1)
                for i in np.flatnonzero(near.reshape(-1)):
                    flat_out[i] = fn(float(flat_x[i]))
    return _flush_denormals(out)


def _packet_exp(x: np.ndarray) -> np.ndarray:
    """Eigen's vectorised float32 ``exp`` (no FMA), 1-D float32."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        underflow = x < _F32(-104.0)
        v = np.minimum(x, _F32(88.723))
        m = np.floor(v * _F32(1.44269504088896341) + _F32(0.5))
        r = m * _F32(-0.693359375) + v
        r = m * _F32(2.12194440e-4) + r
        r2 = r * r
        even = r2 * _F32(1.37449637986719608306884765625e-3) + _F32(4.166965186595916748046875e-2)
        odd = r2 * _F32(8.36894474923610687255859375e-3) + _F32(0.16666518151760101318359375)
        even = r2 * even + _F32(0.49999988079071044921875)
        low = r + _F32(1.0)
        y = r * odd + even
        y = r2 * y + low
        out = _flush_denormals(np.ldexp(y, np.clip(np.nan_to_num(m), -300, 300).astype(np.int32)))
        out = np.maximum(out, x)
        out[underflow] = 0.0
    return out.astype(_F32, copy=False)


def _packet_sigmoid(x: np.ndarray) -> np.ndarray:
    """Eigen's vectorised float32 logistic function (no FMA), 1-D float32."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        underflow = x < _F32(-104.0)
        v = np.minimum(x, _F32(16.6355324)) * _F32(0.5)
        m = np.floor(v * _F32(1.44269504088896341) + _F32(0.5))
        r = m * _F32(-0.693359375) + v
        r = m * _F32(2.12194440e-4) + r
        r2 = r * r
        even = r2 * _F32(4.1898667812347412109375e-2) + _F32(0.49999141693115234375)
        odd = r2 * _F32(8.33471305668354034423828125e-3) + _F32(0.16666877269744873046875)
        low = r + _F32(1.0)
        p = r * odd + even
        p = r2 * p + low
        e = np.ldexp(p, np.clip(np.nan_to_num(m), -300, 300).astype(np.int32))
        e = _flush_denormals(e * e)
        out = e / (_F32(1.0) + e)
        out[underflow] = 0.0
    return out.astype(_F32, copy=False)


def _elementwise_like_tf(x, packet_fn, scalar_fn) -> np.ndarray:
    """Applies an Eigen unary op as TF's CPU kernels do: packets over the flattened
    array, the scalar form on the last ``size % 8`` elements."""
    x = np.asarray(x, _F32)
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    body = flat.size - flat.size % _PACKET
    out[:body] = packet_fn(flat[:body])
    if body < flat.size:
        out[body:] = scalar_fn(flat[body:])
    return out.reshape(x.shape)


def tf_exp(x) -> np.ndarray:
    """float32 ``tf.exp`` as TensorFlow's x86 CPU kernel computes it (same shape)."""
    return _elementwise_like_tf(x, _packet_exp, _libm_expf)


def _scalar_sigmoid(x: np.ndarray) -> np.ndarray:
    e = _libm_expf(np.minimum(x, _F32(16.6355324)))
    with np.errstate(invalid="ignore"):
        return _flush_denormals(e / (_F32(1.0) + e))


def tf_sigmoid(x) -> np.ndarray:
    """float32 ``tf.sigmoid`` as TensorFlow's x86 CPU kernel computes it (same shape)."""
    return _elementwise_like_tf(x, _packet_sigmoid, _scalar_sigmoid)


# ------------------------------------------------------------------ box coding
def decode_boxes_numpy(codes, anchors, scale_factors: Optional[Sequence[float]] = None,
                       max_log_scale: Optional[float] = None) -> np.ndarray:
    """Decodes ``(ty, tx, th, tw)`` codes to boxes, as
    :func:`common.detection.box_coding.decode_boxes` (same float32 operations,
    same order).

    Args:
        codes: ``[..., 4]`` codes (computed in float32).
        anchors: ``[..., 4]`` anchors ``(ymin, xmin, ymax, xmax)``,
            broadcastable against ``codes``.
        scale_factors: the 4 positive multipliers used when encoding, if any.
        max_log_scale: if set, ``th`` and ``tw`` are clipped to it before ``exp``.

    Returns:
        float32 ``[..., 4]`` boxes ``(ymin, xmin, ymax, xmax)`` (the broadcast shape).
    """
    codes = np.asarray(codes, _F32)
    anchors = np.asarray(anchors).astype(_F32, copy=False)
    ymin_a, xmin_a, ymax_a, xmax_a = (anchors[..., i] for i in range(4))
    yc_a, xc_a = (ymin_a + ymax_a) / _F32(2.0), (xmin_a + xmax_a) / _F32(2.0)
    h_a, w_a = ymax_a - ymin_a, xmax_a - xmin_a
    ty, tx, th, tw = (np.ascontiguousarray(codes[..., i]) for i in range(4))
    if scale_factors is not None:
        if len(scale_factors) != 4 or min(scale_factors) <= 0:
            raise ValueError(f"scale_factors {scale_factors!r} must be 4 positive numbers (ty, tx, th, tw).")
        f = [_F32(s) for s in scale_factors]
        ty, tx, th, tw = ty / f[0], tx / f[1], th / f[2], tw / f[3]
    if max_log_scale is not None:
        th, tw = np.minimum(th, _F32(max_log_scale)), np.minimum(tw, _F32(max_log_scale))
    h = tf_exp(th) * h_a
    w = tf_exp(tw) * w_a
    yc = ty * h_a + yc_a
    xc = tx * w_a + xc_a
    half_h, half_w = h / _F32(2.0), w / _F32(2.0)
    return np.stack([yc - half_h, xc - half_w, yc + half_h, xc + half_w], axis=-1).astype(_F32, copy=False)


# ------------------------------------------------------------------ IoU
class _Boxes:
    """float32 ``[K, 4]`` boxes prepared for TensorFlow's NMS IoU."""

    def __init__(self, boxes: np.ndarray):
        boxes = np.asarray(boxes, _F32).reshape(-1, 4)
        self.ymin = np.minimum(boxes[:, 0], boxes[:, 2])
        self.xmin = np.minimum(boxes[:, 1], boxes[:, 3])
        self.ymax = np.maximum(boxes[:, 0], boxes[:, 2])
        self.xmax = np.maximum(boxes[:, 1], boxes[:, 3])
        self.area = (self.ymax - self.ymin) * (self.xmax - self.xmin)

    def iou(self, rows, cols=slice(None)) -> np.ndarray:
        """float32 IoU of the boxes ``rows`` with the boxes ``cols`` (each an int, a
        slice or an index array); ``[len(rows), len(cols)]``, or 1-D for an int row."""
        if isinstance(rows, (int, np.integer)):
            return self.iou(np.asarray([rows]), cols)[0]

        def take(values):
            return values[rows][:, None], values[cols][None, :]

        (area_i, area_j), zero = take(self.area), _F32(0.0)
        (ymin_i, ymin_j), (xmin_i, xmin_j) = take(self.ymin), take(self.xmin)
        (ymax_i, ymax_j), (xmax_i, xmax_j) = take(self.ymax), take(self.xmax)
        height = np.maximum(np.minimum(ymax_i, ymax_j) - np.maximum(ymin_i, ymin_j), zero)
        width = np.maximum(np.minimum(xmax_i, xmax_j) - np.maximum(xmin_i, xmin_j), zero)
        inter = height * width
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (area_i + area_j - inter)
        iou[~((area_i > 0) & (area_j > 0))] = 0.0
        return iou


# ------------------------------------------------------------------ NonMaxSuppressionV5
def non_max_suppression_v5(boxes, scores, max_output_size: int, iou_threshold: float = 0.5,
                           score_threshold: float = float("-inf"),
                           soft_nms_sigma: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """``tf.raw_ops.NonMaxSuppressionV5`` for one image, without padding.

    Args:
        boxes: ``[K, 4]`` boxes (float32).
        scores: ``[K]`` scores (float32).
        max_output_size: most boxes selected.
        iou_threshold: hard-NMS threshold in ``[0, 1]`` (unused when soft).
        score_threshold: only scores strictly above it take part.
        soft_nms_sigma: TensorFlow's sigma (penalty ``exp(-0.5 * iou**2 /
            soft_nms_sigma)``); 0 gives hard NMS.

    Returns:
        int32 selected indices ``[n]`` and their float32 (penalised) scores
        ``[n]``, ``n <= max_output_size``, in selection order.
    """
    iou_thr, score_thr, sigma = _F32(iou_threshold), _F32(score_threshold), _F32(soft_nms_sigma)
    if not 0.0 <= iou_thr <= 1.0:
        raise ValueError(f"iou_threshold {iou_threshold!r} must be in [0, 1].")
    if not sigma >= 0.0:
        raise ValueError(f"soft_nms_sigma {soft_nms_sigma!r} must be >= 0.")
    boxes, scores = np.asarray(boxes, _F32).reshape(-1, 4), np.asarray(scores, _F32).reshape(-1)
    cand = np.flatnonzero(scores > score_thr)
    if max_output_size <= 0 or cand.size == 0:
        return np.zeros(0, np.int32), np.zeros(0, _F32)
    if sigma > 0:
        pos, kept = _soft_nms(_Boxes(boxes[cand]), scores[cand], max_output_size, score_thr, sigma)
        return cand[pos].astype(np.int32), kept
    order = np.argsort(-scores[cand], kind="stable")  # score descending, index ascending
    picked = cand[order]
    pos = _greedy_hard_nms(_Boxes(boxes[picked]), max_output_size, iou_thr)
    return picked[pos].astype(np.int32), scores[picked[pos]]


def _greedy_hard_nms(boxes: _Boxes, max_output_size: int, iou_thr: np.float32) -> np.ndarray:
    """Greedy hard NMS over boxes already in pop order (a box is dropped when its
    IoU with an earlier selected box exceeds the threshold); returns the selected
    positions. Works through the candidates in growing blocks, one IoU matrix each."""
    n = boxes.area.size
    selected = []
    start, block = 0, 128
    while len(selected) < max_output_size and start < n:
        stop = min(n, start + block)
        span = slice(start, stop)
        alive = np.ones(stop - start, bool)
        if selected:
            alive &= ~(boxes.iou(np.asarray(selected), span) > iou_thr).any(axis=0)
        overlap = boxes.iou(span, span) > iou_thr
        for q in np.flatnonzero(alive).tolist():
            if not alive[q]:
                continue
            selected.append(start + q)
            if len(selected) == max_output_size:
                break
            alive[q + 1:] &= ~overlap[q, q + 1:]
        start, block = stop, min(2 * block, 1024)
    return np.asarray(selected, np.int64)


def _soft_nms(boxes: _Boxes, scores: np.ndarray, max_output_size: int, score_thr: np.float32,
              sigma: np.float32) -> Tuple[np.ndarray, np.ndarray]:
    """Gaussian soft-NMS of ``NonMaxSuppressionV5`` over candidates (all above the
    threshold), positions in index order."""
    n = scores.size
    scale = _F32(-0.5) / sigma
    thr = float(score_thr)
    # Queue entries (-score, position, first selected box not yet applied). Positions are
    # unique in the queue, so the order is (score descending, index ascending), as TF's.
    queue = [(-float(s), p, 0) for p, s in enumerate(scores.tolist())]
    heapq.heapify(queue)
    weights = np.empty((min(max_output_size, n, 64), n), _F32)  # row j: penalty of selected j
    # Few candidates (e.g. one class): all penalties at once (cheaper than a row per
    # selection while n * n stays below about (rows needed) * (n + per-call overhead)).
    every = _penalties(boxes, slice(None), scale) if n * n <= min(max_output_size, n) * (n + 3000) else None
    selected, kept = [], []
    while len(selected) < max_output_size and queue:
        neg, p, begin = heapq.heappop(queue)
        score = original = -neg
        count = len(selected)
        if begin < count:
            # score * w[count-1] * ... * w[begin], newest first, rounded to float32 at
            # every step (accumulate is sequential); stop at the first value <= thr.
            running = np.empty(count - begin + 1, _F32)
            running[0] = score
            running[1:] = weights[begin:count, p][::-1]
            np.multiply.accumulate(running, out=running)
            if running[-1] < _TINY and np.abs(running).min() < _TINY:
                score = _penalised_with_ftz(score, weights[begin:count, p][::-1], thr)
            else:
                below = np.flatnonzero(running <= thr)
                score = float(running[below[0]] if below.size else running[-1])
        if score == original:
            selected.append(p)
            kept.append(score)
            if len(selected) < max_output_size:
                if count == weights.shape[0]:
                    grown = np.empty((min(2 * count, max_output_size, n), n), _F32)
                    grown[:count] = weights
                    weights = grown
                weights[count] = every[p] if every is not None else _penalties(boxes, p, scale)
        elif score > thr:
            heapq.heappush(queue, (-score, p, count))
    return np.asarray(selected, np.int64), np.asarray(kept, _F32)


def _penalised_with_ftz(score: float, factors: np.ndarray, thr: float) -> float:
    """The penalty loop one step at a time, flushing float32 denormals to 0 as TF
    does (only reached when a running score leaves the normal float32 range)."""
    for factor in factors.tolist():
        score = float(_F32(score * factor))  # exact float32 product
        if abs(score) < _TINY:
            score = 0.0
        if score <= thr:
            break
    return score


def _penalties(boxes: _Boxes, rows, scale: np.float32) -> np.ndarray:
    """Soft-NMS weights ``exp(scale * iou * iou)`` (float32, C ``expf``) of the boxes
    ``rows`` against all boxes; exactly 1 where the boxes do not overlap."""
    iou = boxes.iou(rows)
    weights = np.ones_like(iou)
    overlap = iou != 0
    weights[overlap] = _libm_expf((scale * iou[overlap]) * iou[overlap])
    return weights


# ------------------------------------------------------------------ libstdc++ algorithms
# Replayed only when equal scores make TensorFlow's order depend on them.
def _push_heap(v, first, hole, top, value, less):
    parent = (hole - 1) // 2
    while hole > top and less(v[first + parent], value):
        v[first + hole] = v[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    v[first + hole] = value


def _adjust_heap(v, first, hole, length, value, less):
    top = child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if less(v[first + child], v[first + child - 1]):
            child -= 1
        v[first + hole] = v[first + child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        v[first + hole] = v[first + child - 1]
        hole = child - 1
    _push_heap(v, first, hole, top, value, less)


def _pop_heap(v, first, last, result, less):
    value = v[result]
    v[result] = v[first]
    _adjust_heap(v, first, 0, last - first, value, less)


class _StdPriorityQueue:
    """``std::priority_queue`` on a vector (libstdc++ ``push_heap`` / ``pop_heap``)."""

    def __init__(self, less):
        self.items, self.less = [], less

    def push(self, item):
        self.items.append(item)
        _push_heap(self.items, 0, len(self.items) - 1, 0, item, self.less)

    def pop(self):
        items = self.items
        top = items[0]
        if len(items) > 1:
            _pop_heap(items, 0, len(items) - 1, len(items) - 1, self.less)
        items.pop()
        return top

    def __len__(self):
        return len(self.items)


def _std_sort(v: list, less) -> None:
    """libstdc++ ``std::sort`` (introsort + final insertion sort), in place."""
    n = len(v)
    if n > 1:
        _introsort_loop(v, 0, n, 2 * (n.bit_length() - 1), less)
        if n > 16:
            _insertion_sort(v, 0, 16, less)
            for i in range(16, n):
                _unguarded_linear_insert(v, i, less)
        else:
            _insertion_sort(v, 0, n, less)


def _introsort_loop(v, first, last, depth, less):
    while last - first > 16:
        if depth == 0:  # heap sort of the range
            length = last - first
            parent = (length - 2) // 2
            while True:
                _adjust_heap(v, first, parent, length, v[first + parent], less)
                if parent == 0:
                    break
                parent -= 1
            while last - first > 1:
                last -= 1
                _pop_heap(v, first, last, last, less)
            return
        depth -= 1
        # Median of (first + 1, middle, last - 1) moved to first, then unguarded partition.
        a, b, c = first + 1, first + (last - first) // 2, last - 1
        if less(v[a], v[b]):
            pick = b if less(v[b], v[c]) else (c if less(v[a], v[c]) else a)
        elif less(v[a], v[c]):
            pick = a
        else:
            pick = c if less(v[b], v[c]) else b
        v[first], v[pick] = v[pick], v[first]
        lo, hi, pivot = first + 1, last, v[first]
        while True:
            while less(v[lo], pivot):
                lo += 1
            hi -= 1
            while less(pivot, v[hi]):
                hi -= 1
            if not lo < hi:
                break
            v[lo], v[hi] = v[hi], v[lo]
            lo += 1
        _introsort_loop(v, lo, last, depth, less)
        last = lo


def _insertion_sort(v, first, last, less):
    for i in range(first + 1, last):
        if less(v[i], v[first]):
            value = v[i]
            v[first + 1:i + 1] = v[first:i]
            v[first] = value
        else:
            _unguarded_linear_insert(v, i, less)


def _unguarded_linear_insert(v, last, less):
    value = v[last]
    prev = last - 1
    while less(value, v[prev]):
        v[last] = v[prev]
        last = prev
        prev -= 1
    v[last] = value


def _has_ties(sorted_values: np.ndarray) -> bool:
    return bool(sorted_values.size > 1 and (sorted_values[1:] == sorted_values[:-1]).any())


# ------------------------------------------------------------------ CombinedNonMaxSuppression
def combined_non_max_suppression(boxes, scores, max_output_size_per_class: int, max_total_size: int,
                                 iou_threshold: float = 0.5, score_threshold: float = float("-inf")):
    """``tf.image.combined_non_max_suppression`` for one image, with one box per
    anchor shared by all classes, ``pad_per_class=False`` and ``clip_boxes=False``.

    Args:
        boxes: ``[K, 4]`` boxes.
        scores: ``[K, C]`` per-class scores.
        max_output_size_per_class: most boxes kept per class.
        max_total_size: most boxes kept in all (the output length).
        iou_threshold: hard-NMS threshold in ``[0, 1]``.
        score_threshold: only scores strictly above it take part.

    Returns:
        float32 boxes ``[max_total_size, 4]``, float32 scores ``[max_total_size]``,
        0-based int32 classes ``[max_total_size]`` (zero-padded) and the number
        of valid rows.
    """
    iou_thr, score_thr = _F32(iou_threshold), _F32(score_threshold)
    if not 0.0 <= iou_thr <= 1.0:
        raise ValueError(f"iou_threshold {iou_threshold!r} must be in [0, 1].")
    if max_output_size_per_class <= 0 or max_total_size <= 0:
        raise ValueError("max_output_size_per_class and max_total_size must be > 0.")
    boxes = np.asarray(boxes, _F32).reshape(-1, 4)
    scores = np.asarray(scores, _F32)
    num_boxes, num_classes = scores.shape
    per_class = min(max_output_size_per_class, num_boxes)
    slot_scores = np.full((num_classes, per_class), -np.inf, _F32)
    slot_boxes = np.zeros((num_classes, per_class), np.int64)
    above = scores > score_thr
    for c in range(num_classes):
        cand = np.flatnonzero(above[:, c])
        if cand.size:
            picked = _class_hard_nms(boxes, cand, scores[cand, c], per_class, iou_thr)
            slot_boxes[c, :picked.size] = picked
            slot_scores[c, :picked.size] = scores[picked, c]

    flat = slot_scores.reshape(-1)
    count = int(np.count_nonzero(slot_scores > -np.inf))
    total = min(count, max_total_size)
    order = np.argsort(-flat, kind="stable")
    if _has_ties(flat[order[:min(total + 1, count)]]):
        values = flat.tolist()
        order = list(range(flat.size))
        _std_sort(order, lambda a, b: values[b] < values[a])
        order = np.asarray(order, np.int64)
    order = order[:total]
    out_boxes = np.zeros((max_total_size, 4), _F32)
    out_scores = np.zeros(max_total_size, _F32)
    out_classes = np.zeros(max_total_size, np.int32)
    out_boxes[:total] = boxes[slot_boxes.reshape(-1)[order]]
    out_scores[:total] = flat[order]
    out_classes[:total] = order // per_class
    return out_boxes, out_scores, out_classes, total


def _class_hard_nms(boxes: np.ndarray, cand: np.ndarray, cand_scores: np.ndarray, per_class: int,
                    iou_thr: np.float32) -> np.ndarray:
    """One class of ``CombinedNonMaxSuppression``: box indices selected, in order."""
    order = np.argsort(-cand_scores, kind="stable")
    sorted_scores = cand_scores[order]
    prepared = _Boxes(boxes[cand[order]])
    pos = _greedy_hard_nms(prepared, per_class, iou_thr)
    examined = cand.size if pos.size < per_class else int(pos[-1]) + 1
    if not _has_ties(sorted_scores[:examined + 1]):
        return cand[order[pos]]
    # Equal scores among the boxes the kernel pops: replay its score-only heap.
    values = cand_scores.tolist()
    queue = _StdPriorityQueue(lambda a, b: values[a] < values[b])
    for p in range(cand.size):
        queue.push(p)
    every = _Boxes(boxes[cand])
    selected = []
    while len(selected) < per_class and len(queue):
        p = queue.pop()
        if selected and (every.iou(p, np.asarray(selected)) > iou_thr).any():
            continue
        selected.append(p)
    return cand[np.asarray(selected, np.int64)]


# ------------------------------------------------------------------ post-processing
def _ordered(outputs: LevelOutputs) -> list:
    if isinstance(outputs, Mapping):
        return [outputs[k] for k in sorted(outputs)]
    return list(outputs)


def merge_level_outputs_numpy(class_outputs: LevelOutputs, box_outputs: LevelOutputs,
                              num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """Flattens per-level head outputs into per-anchor arrays.

    Args:
        class_outputs: per level ``[B, H_l, W_l, A * num_classes]`` (a sequence
            ``min_level`` first, or a dict keyed by level).
        box_outputs: per level ``[B, H_l, W_l, A * 4]``.
        num_classes: classes per anchor.

    Returns:
        float32 logits ``[B, N, num_classes]`` and codes ``[B, N, 4]``.
    """
    class_outputs = [np.asarray(c) for c in _ordered(class_outputs)]
    box_outputs = [np.asarray(b) for b in _ordered(box_outputs)]
    batch = class_outputs[0].shape[0]
    logits = np.concatenate([c.astype(_F32, copy=False).reshape(batch, -1, num_classes)
                             for c in class_outputs], axis=1)
    codes = np.concatenate([b.astype(_F32, copy=False).reshape(batch, -1, 4) for b in box_outputs],
                           axis=1)
    return logits, codes


def postprocess_numpy(
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
) -> Detections:
    """Raw head outputs → final detections, in NumPy (module docstring).

    The arguments and results are those of
    :func:`common.detection.postprocess.postprocess` (without ``unroll``).

    Args:
        class_outputs: per level ``[B, H_l, W_l, A * num_classes]`` logits
            (sequence ``min_level`` first, or dict level → array).
        box_outputs: per level ``[B, H_l, W_l, A * 4]`` codes.
        anchor_boxes: ``[N, 4]`` anchors of the network input.
        image_size: network input ``(height, width)`` or int (clipping range).
        num_classes: number of classes.
        mode: ``global``, ``global_hard``, ``per_class``, ``per_class_hard`` or
            ``combined``, or an alias (:data:`common.detection.nms.ALIASES`).
        image_scales: optional ``[B]`` (or scalar) factor from network-input
            pixels to original-image pixels.
        max_detections: detections kept per image (``D``).
        max_candidates: anchors kept before NMS; ``0`` or ``None`` keeps all.
        iou_threshold: hard-NMS IoU threshold (unused by soft-NMS).
        score_threshold: minimum score; ``None``: 0.001 for ``global`` and
            ``per_class``, no threshold for the others.
        sigma: Gaussian soft-NMS sigma in the paper's convention (soft modes).

    Returns:
        :class:`Detections`: boxes float32 ``[B, D, 4]``, scores float32
        ``[B, D]``, classes int32 ``[B, D]`` (1-based), num_detections int32 ``[B]``.
    """
    mode = canonical_nms_method(mode)
    if score_threshold is None:
        score_threshold = 0.001 if mode in ("global", "per_class") else float("-inf")
    height, width = parse_image_size(image_size)
    max_detections = int(max_detections)
    if not 0.0 <= _F32(iou_threshold) <= 1.0:  # both TF kernels refuse it
        raise ValueError(f"iou_threshold {iou_threshold!r} must be in [0, 1].")
    if mode in ("global", "per_class") and not sigma >= 0:
        raise ValueError(f"sigma {sigma!r} must be >= 0.")

    logits, codes = merge_level_outputs_numpy(class_outputs, box_outputs, num_classes)
    anchors = np.asarray(anchor_boxes).astype(_F32, copy=False)
    batch, num_anchors = logits.shape[:2]
    best_logit = logits.max(axis=-1)  # [B, N]
    if max_candidates and max_candidates < num_anchors:
        keep = np.stack([_top_k_indices(row, int(max_candidates)) for row in best_logit])
        rows = np.arange(batch)[:, None]
        logits, codes = logits[rows, keep], codes[rows, keep]  # [B, K, C], [B, K, 4]
        anchors = anchors[keep]  # [B, K, 4]
    else:
        anchors = anchors[None]
    boxes = decode_boxes_numpy(codes, anchors)  # [B, K, 4]

    out_boxes = np.zeros((batch, max_detections, 4), _F32)
    out_scores = np.zeros((batch, max_detections), _F32)
    out_classes = np.zeros((batch, max_detections), np.int32)  # 0-based until the end
    valid = np.zeros(batch, np.int32)

    if mode in ("global", "global_hard", "per_class"):
        scores = tf_sigmoid(logits.max(axis=-1))  # [B, K]
        classes = logits.argmax(axis=-1).astype(np.int32)
        for b in range(batch):
            if mode == "per_class":
                idx, kept, cls = _per_class_soft_nms(
                    boxes[b], scores[b], classes[b], num_classes, max_detections, iou_threshold,
                    max(score_threshold, -0.5), sigma / 2.0)
            else:
                soft_sigma = sigma if mode == "global" else 0.0
                idx, kept = non_max_suppression_v5(
                    boxes[b], scores[b], max_detections, iou_threshold, score_threshold,
                    soft_sigma / 2.0)
                cls = classes[b, idx]
            n = idx.size
            out_boxes[b, :n], out_scores[b, :n], out_classes[b, :n], valid[b] = boxes[b, idx], kept, cls, n
    else:
        probs = tf_sigmoid(logits)  # [B, K, C]
        if mode == "per_class_hard":
            # Other classes of an anchor get -1, strictly below any usable threshold.
            best = logits.argmax(axis=-1)
            probs = np.where(np.arange(num_classes) == best[..., None], probs, _F32(-1.0))
            score_threshold = max(score_threshold, -0.5)
        for b in range(batch):
            out_boxes[b], out_scores[b], out_classes[b], valid[b] = combined_non_max_suppression(
                boxes[b], probs[b], max_detections, max_detections, iou_threshold, score_threshold)

    if mode not in ("per_class", "per_class_hard"):
        limits = np.array([height, width, height, width], _F32)
        out_boxes = np.maximum(np.minimum(out_boxes, limits), _F32(0.0))
    if image_scales is not None:
        scales = np.asarray(image_scales).astype(_F32, copy=False)
        out_boxes = out_boxes * (scales.reshape(-1, 1, 1) if scales.ndim else scales)
    rows = np.arange(max_detections)[None, :] < valid[:, None]
    return Detections(
        boxes=np.where(rows[..., None], out_boxes, _F32(0.0)).astype(_F32, copy=False),
        scores=np.where(rows, out_scores, _F32(0.0)).astype(_F32, copy=False),
        classes=np.where(rows, out_classes + 1, 0).astype(np.int32),
        num_detections=valid,
    )


def _top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``tf.math.top_k(values, k, sorted=True)`` for a 1-D array: largest
    first, equal values in index order (also at the cut)."""
    negated = -values
    kth = np.partition(negated, k - 1)[k - 1]
    inside = np.flatnonzero(negated < kth)
    at_cut = np.flatnonzero(negated == kth)[:k - inside.size]
    chosen = np.sort(np.concatenate([inside, at_cut]))
    if chosen.size != k:  # NaN among the values: fall back to a full sort
        chosen = np.arange(values.size)
    return chosen[np.argsort(negated[chosen], kind="stable")][:k]


def _per_class_soft_nms(boxes, scores, classes, num_classes, max_detections, iou_threshold,
                        score_threshold, soft_sigma):
    """Soft-NMS inside each class (one class per anchor), then the best
    ``max_detections`` of all classes (TF's ``top_k`` over ``[C * D]``).

    Returns box indices ``[n]``, scores ``[n]`` and 0-based classes ``[n]``.
    """
    kept_all = np.full((num_classes, max_detections), -np.inf, _F32)
    idx_all = np.zeros((num_classes, max_detections), np.int64)
    total = 0
    for c in range(num_classes):
        members = np.flatnonzero(classes == c)
        if not members.size:
            continue
        idx, kept = non_max_suppression_v5(boxes[members], scores[members], max_detections,
                                           iou_threshold, score_threshold, soft_sigma)
        kept_all[c, :idx.size], idx_all[c, :idx.size] = kept, members[idx]
        total += idx.size
    total = min(total, max_detections)
    order = np.argsort(-kept_all.reshape(-1), kind="stable")[:total]
    return idx_all.reshape(-1)[order], kept_all.reshape(-1)[order], (order // max_detections).astype(np.int32)
