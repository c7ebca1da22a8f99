"""Anchor analysis of a detection dataset: how well the detector's anchors fit
its boxes, and anchor settings that fit them better.

For every ground-truth box of the records (mapped into the network input as the
evaluation view maps it: :func:`dataset.preprocessing.resize_and_pad`, keeping
the aspect ratio, no augmentation) the tool finds the best IoU any anchor of
the detector reaches (:mod:`common.detection.anchors`, the anchors training
uses). A box whose best IoU reaches the target assigner's matched threshold
gets positive anchors; one below it gets only its single best anchor through
force matching (:mod:`common.detection.target_assigner`). It reports:

1. the **coverage** (share of boxes whose best anchor reaches the matched
   threshold) overall, per COCO size bucket (small < 32², medium < 96², large,
   in input pixels) and per class; the boxes no anchor can match, with a few
   examples; percentiles of the box size (sqrt of the area) and the aspect
   ratio (width / height);
2. a **search** for better anchor settings with the same number of anchors per
   location (unless ``--max_anchors_per_location`` allows more): candidate
   aspect ratios from 1-D k-means of ``log(w / h)`` (the official
   parameterisation: an entry ``r`` makes anchors with ``w / h = r`` and the
   area of the square one), widened and narrowed around their centre, times a
   grid of ``anchor_scale`` values (and of ``num_scales`` with
   ``--search_num_scales``); the best is printed as config lines to paste;
3. ``boxes.png``: box width against height (log scales, input pixels) with
   the anchor shapes of the current and the suggested settings, and a histogram
   of the aspect ratios.

``analysis.json`` and ``boxes.png`` are written together into ``--output_dir``
through :class:`common.atomic_files.FileSet` (both complete, or neither).

Why an aspect ratio far from every anchor's cannot be matched: for a box of
aspect ratio ``rho`` times an anchor's (``rho >= 1``), centred on the anchor,
the best IoU over all anchor sizes is ``1 / (2 sqrt(rho) - 1)``, which is
below 0.5 once ``rho > 2.25``: boxes with ``w / h = 6`` never reach 0.5 with
the default ratios (1, 2, 0.5), whatever ``anchor_scale`` is.

The matching thresholds are the model config's ``matched_threshold`` /
``unmatched_threshold`` when it has them, otherwise those of the
:class:`~common.detection.target_assigner.TargetAssigner` that training builds
with ``TargetAssigner.from_config(model)`` (0.5 / 0.5, as the official
EfficientDet). Crowd boxes are left out (training drops them).

Resolving a detector config needs the model families registered, so the
command line is the EfficientDet entry point (which registers its family and
calls :func:`main`)::

    python -m efficientdet.analyze_boxes --file_pattern 'data/train-*' --model_name efficientdet-d0 \\
        [--config configs/x.yaml] [--hparams ...] [--label_map labels.json] --output_dir runs/anchors
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import math
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

from common import atomic_files
from common.config import ConfigError, load_config
from common.detection.anchors import AnchorSet
from common.detection.target_assigner import TargetAssigner
from common.export.label_map import LabelMapError, label_name, load_label_map, nearby_label_map
from dataset import input_utils, record_check
from dataset.converter_utils import check_output_path, setup_logging
from dataset.detection_parser import validate_objects
from dataset.errors import DatasetError
from dataset.tfrecord_format import BOX_KEYS, parse_detection_example

logger = logging.getLogger("dataset")

MATCHING_KEYS = ("matched_threshold", "unmatched_threshold")
SIZE_BUCKETS = (("small", 0.0, 32.0 ** 2), ("medium", 32.0 ** 2, 96.0 ** 2), ("large", 96.0 ** 2, math.inf))
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
RATIO_SPREADS = (0.5, 0.75, 1.0, 1.25, 1.5)  # k-means ratios widened/narrowed around their centre (log space)
SCALE_STEPS = tuple(2.0 ** (i / 4.0) for i in range(-4, 5))  # anchor_scale x 0.5 … x 2
MAX_NUM_SCALES = 4
ANALYSIS_FILE = "analysis.json"
FIGURE_FILE = "boxes.png"
_CHUNK = 32768  # boxes per IoU step: bounds memory to a few [chunk, A, 4] arrays


# --------------------------------------------------------------------------
# Anchor settings and matching thresholds
# --------------------------------------------------------------------------


def _significant(value: float, digits: int = 3) -> float:
    return float(f"{float(value):.{digits}g}")


@dataclasses.dataclass(frozen=True)
class AnchorSettings:
    """The anchor attributes of a detector config (what :meth:`AnchorSet.from_config` reads).

    Attributes:
        image_size: ``(height, width)`` of the network input.
        min_level, max_level: pyramid levels.
        num_scales: octave scales per level.
        aspect_ratios: width / height of each anchor shape (or ``(x, y)`` pairs).
        anchor_scale: base anchor size relative to the stride (float, or one per level).
    """

    image_size: Tuple[int, int]
    min_level: int
    max_level: int
    num_scales: int
    aspect_ratios: tuple
    anchor_scale: object

    @classmethod
    def from_config(cls, model_config) -> "AnchorSettings":
        scale = model_config.anchor_scale
        ratios = tuple(tuple(r) if isinstance(r, list) else r for r in model_config.aspect_ratios)
        return cls(tuple(model_config.image_size), int(model_config.min_level), int(model_config.max_level),
                   int(model_config.num_scales), ratios,
                   tuple(scale) if isinstance(scale, (list, tuple)) else float(scale))

    @property
    def anchors_per_location(self) -> int:
        return self.num_scales * len(self.aspect_ratios)

    def anchors(self) -> AnchorSet:
        """The detector's anchors for these settings (float32 ``[N, 4]`` in ``.boxes``)."""
        return AnchorSet.from_config(self)

    def scaled(self, factor: float) -> "AnchorSettings":
        """The same settings with ``anchor_scale`` multiplied by ``factor`` (3 significant digits)."""
        if isinstance(self.anchor_scale, tuple):
            scale = tuple(_significant(s * factor) for s in self.anchor_scale)
        else:
            scale = _significant(self.anchor_scale * factor)
        return dataclasses.replace(self, anchor_scale=scale)

    def config_lines(self) -> List[str]:
        """``model.key=value`` lines for ``--hparams`` / ``--override`` (no spaces)."""
        ratios = ",".join(_format_ratio(r) for r in self.aspect_ratios)
        scale = (f"[{','.join(repr(s) for s in self.anchor_scale)}]" if isinstance(self.anchor_scale, tuple)
                 else repr(self.anchor_scale))
        return [f"model.num_scales={self.num_scales}", f"model.aspect_ratios=[{ratios}]",
                f"model.anchor_scale={scale}"]

    def as_dict(self) -> dict:
        return {"num_scales": self.num_scales, "aspect_ratios": [_jsonable_ratio(r) for r in self.aspect_ratios],
                "anchor_scale": list(self.anchor_scale) if isinstance(self.anchor_scale, tuple)
                else self.anchor_scale, "anchors_per_location": self.anchors_per_location}


def _format_ratio(ratio) -> str:
    if isinstance(ratio, (list, tuple)):
        return f"[{float(ratio[0])!r},{float(ratio[1])!r}]"
    return repr(float(ratio))


def _jsonable_ratio(ratio):
    return [float(v) for v in ratio] if isinstance(ratio, (list, tuple)) else float(ratio)


def _ratio_value(ratio) -> float:
    """Width / height of an aspect-ratio entry (a number, or an ``(x, y)`` factor pair)."""
    return float(ratio[0]) / float(ratio[1]) if isinstance(ratio, (list, tuple)) else float(ratio)


def matching_thresholds(model_config) -> Tuple[float, float, str]:
    """The IoU thresholds of the detector's target assigner.

    Args:
        model_config: a detector model config.

    Returns:
        ``(matched, unmatched, source)``: the config's ``matched_threshold`` /
        ``unmatched_threshold`` when it has them, else the defaults of
        :class:`TargetAssigner`, which is what ``TargetAssigner.from_config(model)``
        (the training pipeline's assigner) uses; ``source`` says which.
    """
    defaults = inspect.signature(TargetAssigner.__init__).parameters
    values = [getattr(model_config, key, None) for key in MATCHING_KEYS]
    source = ("model config" if all(v is not None for v in values)
              else "TargetAssigner defaults, as TargetAssigner.from_config(model) in training")
    matched, unmatched = (float(defaults[key].default if v is None else v) for key, v in zip(MATCHING_KEYS, values))
    return matched, unmatched, source


# --------------------------------------------------------------------------
# Reading the boxes
# --------------------------------------------------------------------------


@dataclasses.dataclass
class GroundTruth:
    """Ground-truth boxes in network-input pixels (crowd boxes left out).

    Attributes:
        boxes: float32 ``[K, 4]`` ``(ymin, xmin, ymax, xmax)`` input pixels.
        classes: int32 ``[K]`` 1-based class ids.
        source_ids: int64 ``[K]`` the image id of each box.
        filenames: object ``[K]`` the image file name of each box.
        num_files: record files read.
        num_records: records read.
        num_read: boxes read, crowd boxes included.
        num_crowd: crowd boxes left out.
        truncated: the records hold more boxes than ``max_boxes``.
    """

    boxes: np.ndarray
    classes: np.ndarray
    source_ids: np.ndarray
    filenames: np.ndarray
    num_files: int
    num_records: int
    num_read: int
    num_crowd: int
    truncated: bool

    @property
    def heights(self) -> np.ndarray:
        return self.boxes[:, 2] - self.boxes[:, 0]

    @property
    def widths(self) -> np.ndarray:
        return self.boxes[:, 3] - self.boxes[:, 1]


def letterbox_boxes(boxes: tf.Tensor, image_hw: tf.Tensor, image_size: Tuple[int, int]) -> tf.Tensor:
    """Normalised boxes → network-input pixels of the evaluation letterbox.

    The same mapping as the evaluation path of
    :class:`dataset.detection_input.DetectionExampleProcessor`:
    :func:`dataset.preprocessing.resize_and_pad` scales the image by
    ``min(H / h, W / w)`` (keeping its aspect ratio) and pads bottom/right.

    Args:
        boxes: float32 ``[M, 4]`` normalised ``(ymin, xmin, ymax, xmax)``.
        image_hw: int ``[2]`` original ``(h, w)``.
        image_size: network input ``(H, W)``.

    Returns:
        float32 ``[M, 4]`` boxes in input pixels.
    """
    out_h, out_w = image_size
    hw = tf.cast(image_hw, tf.float32)
    image_scale = 1.0 / tf.minimum(out_h / hw[0], out_w / hw[1])  # resize_and_pad's image_scale
    return boxes * tf.concat([hw, hw], 0) / image_scale


def _image_hw(parsed) -> tf.Tensor:
    """``(h, w)`` from ``image/height`` / ``image/width``; decodes the image only when they are absent."""
    declared = tf.stack([parsed["height"], parsed["width"]])
    return tf.cond(
        tf.reduce_all(declared > 0), lambda: tf.cast(declared, tf.int32),
        lambda: tf.shape(tf.io.decode_image(parsed["encoded"], channels=3, expand_animations=False))[:2])


def record_boxes_fn(image_size: Tuple[int, int], num_classes: int, max_instances_per_image: int):
    """The per-record map of :func:`read_ground_truth`.

    Runs the records' own checks (:func:`dataset.detection_parser.validate_objects`:
    class ids, boxes inside the image, object counts) without decoding the image
    when the record declares its size.

    Returns:
        A function ``serialized → dict`` with ``boxes`` float32 ``[M, 4]``
        (input pixels, :func:`letterbox_boxes`), ``classes`` int32 ``[M]``,
        ``is_crowd`` bool ``[M]``, ``source_id`` int64 and ``filename`` string scalars.
    """

    def parse(serialized):
        parsed = parse_detection_example(serialized)
        checks = validate_objects(parsed, num_classes, max_instances_per_image)
        with tf.control_dependencies(checks):
            boxes = tf.reshape(tf.stack([parsed[k] for k in BOX_KEYS], axis=-1), [-1, 4])
            image_hw = _image_hw(parsed)
            source_id = tf.strings.to_number(tf.strings.strip(parsed["source_id"]), tf.int64)
        boxes = tf.clip_by_value(boxes, 0.0, 1.0)
        crowd = parsed["is_crowd"]
        crowd = tf.cond(tf.size(crowd) > 0, lambda: crowd > 0, lambda: tf.zeros([tf.shape(boxes)[0]], tf.bool))
        return {"boxes": letterbox_boxes(boxes, image_hw, image_size),
                "classes": tf.cast(parsed["labels"], tf.int32), "is_crowd": tf.reshape(crowd, [-1]),
                "source_id": source_id, "filename": parsed["filename"]}

    return parse


def _batches(files: List[str], parse, batch_size: int = 256):
    """Numpy batches ``(boxes [n, 4], classes [n], crowd [n], source_ids [n], filenames [n], records)``."""
    dataset = input_utils.read_records(files, False, deterministic=True)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).ragged_batch(batch_size)
    for batch in dataset:
        lengths = batch["boxes"].row_lengths().numpy()
        filenames = np.array([f.decode("utf-8", "replace") for f in batch["filename"].numpy()], dtype=object)
        yield (batch["boxes"].flat_values.numpy().reshape(-1, 4), batch["classes"].flat_values.numpy(),
               batch["is_crowd"].flat_values.numpy(), np.repeat(batch["source_id"].numpy(), lengths),
               np.repeat(filenames, lengths), lengths)


def read_ground_truth(file_pattern, image_size: Tuple[int, int], num_classes: int,
                      max_instances_per_image: int = 100, max_boxes: Optional[int] = None) -> GroundTruth:
    """Reads the boxes of detection records into network-input pixels.

    Args:
        file_pattern: TFRecord glob, comma-separated globs, or a list.
        image_size: network input ``(height, width)``.
        num_classes: largest valid class id (the records are checked as in training).
        max_instances_per_image: largest valid object count per record.
        max_boxes: read at most this many boxes (crowd boxes count); a cut is
            logged and marked in ``truncated``.

    Returns:
        A :class:`GroundTruth`.

    Raises:
        DatasetError: no file matches, a file is not a (detection) TFRecord,
            or a record is damaged or fails its checks (one line naming it).
    """
    files = record_check.check_record_files(file_pattern, "detection").files
    parse = record_boxes_fn(tuple(image_size), num_classes, max_instances_per_image)
    parts, total, records, truncated = [], 0, 0, False
    with record_check.explained_data_errors(files):
        for *arrays, lengths in _batches(files, parse):
            room = len(arrays[0]) if max_boxes is None else max_boxes - total
            truncated = len(arrays[0]) > room
            parts.append([a[:room] for a in arrays])
            total += len(parts[-1][0])
            records += _records_holding(lengths, room) if truncated else len(lengths)
            if truncated:
                break
    if truncated:
        logger.warning("read only the first %d boxes (of %d records) because of --max_boxes=%d; the records "
                       "hold more, raise --max_boxes to analyse them all", max_boxes, records, max_boxes)
    boxes, classes, crowd, source_ids, filenames = (np.concatenate([p[i] for p in parts]) for i in range(5))
    keep = ~crowd
    return GroundTruth(boxes[keep].astype(np.float32), classes[keep], source_ids[keep], filenames[keep],
                       len(files), records, total, int(crowd.sum()), truncated)


def _records_holding(lengths: np.ndarray, count: int) -> int:
    """How many of the records with box counts ``lengths [B]`` the first ``count`` boxes come from."""
    return int(np.searchsorted(np.cumsum(lengths), count)) + 1 if count else 0


# --------------------------------------------------------------------------
# Best anchor IoU
# --------------------------------------------------------------------------


def aligned_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of corresponding boxes (the element-wise form of
    :func:`common.detection.target_assigner.pairwise_iou`, same conventions).

    Args:
        boxes1, boxes2: ``[..., 4]`` ``(ymin, xmin, ymax, xmax)``, broadcastable.

    Returns:
        ``[...]`` IoU; 0 where the boxes do not intersect.
    """
    height = np.maximum(0.0, np.minimum(boxes1[..., 2], boxes2[..., 2]) - np.maximum(boxes1[..., 0], boxes2[..., 0]))
    width = np.maximum(0.0, np.minimum(boxes1[..., 3], boxes2[..., 3]) - np.maximum(boxes1[..., 1], boxes2[..., 1]))
    inter = height * width
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    union = area1 + area2 - inter
    return np.where(inter > 0.0, inter / np.where(inter > 0.0, union, 1.0), 0.0)


def _level_grids(anchors: AnchorSet):
    """Per level: ``(first flat index, centres_y [H_l], centres_x [W_l], boxes [H_l, W_l, A, 4])``,
    read from the generated anchors (their order: level, row, column, anchor)."""
    grids, start, per_location = [], 0, anchors.anchors_per_location
    for (height, width), count in zip(anchors.level_sizes, anchors.level_counts()):
        level = anchors.boxes[start:start + count].reshape(height, width, per_location, 4)
        centres_y = (level[:, 0, 0, 0] + level[:, 0, 0, 2]) / 2.0
        centres_x = (level[0, :, 0, 1] + level[0, :, 0, 3]) / 2.0
        grids.append((start, centres_y, centres_x, level))
        start += count
    return grids


def _nearest(centres: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index ``[K]`` of the nearest of the ascending ``centres [n]`` to each of ``values [K]``."""
    if len(centres) == 1:
        return np.zeros(len(values), np.int64)
    right = np.clip(np.searchsorted(centres, values), 1, len(centres) - 1)
    left = right - 1
    return np.where(values - centres[left] <= centres[right] - values, left, right)


def best_anchor_iou(boxes: np.ndarray, anchors: AnchorSet) -> Tuple[np.ndarray, np.ndarray]:
    """The best IoU any anchor reaches with each box, and that anchor.

    Exact, without the ``[K, N]`` IoU matrix: the overlap of two boxes along
    each axis only shrinks as their centres move apart, so for every anchor
    shape of a level the best anchor is the one centred nearest to the box
    (per axis). Only those ``levels x A`` anchors are compared.

    Args:
        boxes: ``[K, 4]`` boxes in input pixels.
        anchors: the detector's :class:`AnchorSet`.

    Returns:
        ``(best_iou, best_index)``: float ``[K]`` and int64 ``[K]`` index into
        ``anchors.boxes`` (the lowest level on ties).
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    best = np.full(len(boxes), -1.0)
    index = np.zeros(len(boxes), np.int64)
    for begin in range(0, len(boxes), _CHUNK):
        chunk = boxes[begin:begin + _CHUNK]
        centre_y, centre_x = (chunk[:, 0] + chunk[:, 2]) / 2.0, (chunk[:, 1] + chunk[:, 3]) / 2.0
        for start, centres_y, centres_x, level in _level_grids(anchors):
            row, column = _nearest(centres_y, centre_y), _nearest(centres_x, centre_x)
            iou = aligned_iou(chunk[:, None, :], level[row, column])  # [k, A]
            shape = np.argmax(iou, axis=1)
            value = iou[np.arange(len(chunk)), shape]
            flat = start + (row * level.shape[1] + column) * level.shape[2] + shape
            better = value > best[begin:begin + len(chunk)]
            best[begin:begin + len(chunk)][better] = value[better]
            index[begin:begin + len(chunk)][better] = flat[better]
    return best, index


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


def _share(matched: np.ndarray, best_iou: np.ndarray) -> dict:
    count = int(matched.size)
    return {"boxes": count, "matched": int(matched.sum()),
            "coverage": float(matched.mean()) if count else None,
            "mean_best_iou": float(best_iou.mean()) if count else None}


def coverage_table(gt: GroundTruth, best_iou: np.ndarray, threshold: float,
                   names: Optional[Dict[int, str]] = None) -> dict:
    """Coverage (share of boxes with best IoU >= ``threshold``) overall, per size bucket and per class.

    Args:
        gt: the boxes.
        best_iou: float ``[K]`` from :func:`best_anchor_iou`.
        threshold: the matched threshold.
        names: class names by id (ids without a name are shown as numbers).

    Returns:
        ``{"all": share, "sizes": {bucket: share}, "classes": {name: share}}``,
        each share ``{boxes, matched, coverage, mean_best_iou}``.
    """
    matched = best_iou >= threshold
    area = gt.heights * gt.widths
    sizes = {name: _share(matched[(area >= low) & (area < high)], best_iou[(area >= low) & (area < high)])
             for name, low, high in SIZE_BUCKETS}
    classes = {}
    for cls in np.unique(gt.classes):
        mask = gt.classes == cls
        classes[label_name(names or {}, cls)] = dict(_share(matched[mask], best_iou[mask]), class_id=int(cls))
    return {"all": _share(matched, best_iou), "sizes": sizes, "classes": classes}


def percentiles(values: np.ndarray) -> Dict[str, float]:
    """``{"p1": …, "p99": …}`` of ``values [K]`` (:data:`PERCENTILES`)."""
    if not len(values):
        return {}
    return {f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}


def unmatchable_examples(gt: GroundTruth, best_iou: np.ndarray, threshold: float,
                         names: Optional[Dict[int, str]] = None, limit: int = 5) -> List[dict]:
    """Up to ``limit`` boxes whose best IoU is below ``threshold``, the worst first."""
    order = np.argsort(best_iou, kind="stable")
    order = order[best_iou[order] < threshold][:limit]
    return [{"source_id": int(gt.source_ids[i]), "filename": str(gt.filenames[i]),
             "class": label_name(names or {}, gt.classes[i]),
             "box": [round(float(v), 1) for v in gt.boxes[i]],
             "size": round(float(np.sqrt(gt.heights[i] * gt.widths[i])), 1),
             "aspect_ratio": round(float(gt.widths[i] / gt.heights[i]), 3),
             "best_iou": round(float(best_iou[i]), 3)} for i in order]


# --------------------------------------------------------------------------
# Search for better settings
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Candidate:
    """Anchor settings with the coverage and mean best IoU they reach on the searched boxes."""

    settings: AnchorSettings
    coverage: float
    mean_iou: float

    def as_dict(self) -> dict:
        return dict(self.settings.as_dict(), coverage=self.coverage, mean_best_iou=self.mean_iou)


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 100) -> np.ndarray:
    """Lloyd's k-means of ``values [K]`` into ``k`` centres (deterministic: quantile start).

    Returns:
        float ``[k]`` ascending centres; a centre that loses all its points keeps its place.
    """
    values = np.sort(np.asarray(values, np.float64))
    centres = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        assignment = np.argmin(np.abs(values[:, None] - centres[None, :]), axis=1)
        updated = np.array([values[assignment == j].mean() if np.any(assignment == j) else centres[j]
                            for j in range(k)])
        if np.allclose(updated, centres):
            break
        centres = updated
    return np.sort(centres)


def _distinct_ratios(log_centres: np.ndarray) -> tuple:
    """Ratios ``exp(c)`` (3 significant digits), made distinct by stepping duplicates up an octave."""
    ratios = []
    for centre in log_centres:
        ratio = _significant(math.exp(centre))
        while ratio in ratios:
            ratio = _significant(ratio * 2.0)
        ratios.append(ratio)
    return tuple(sorted(ratios))


def candidate_ratio_sets(log_ratios: np.ndarray, count: int) -> List[tuple]:
    """Aspect-ratio sets of ``count`` entries from the boxes' ``log(w / h)`` ``[K]``.

    k-means centres of the log ratios, and the same centres spread by
    :data:`RATIO_SPREADS` around their mean (k-means centres sit inside their
    clusters; matching the spread of the data can need wider ones).
    """
    centres = kmeans_1d(log_ratios, count)
    middle = centres.mean()
    return list(dict.fromkeys(_distinct_ratios(middle + (centres - middle) * spread) for spread in RATIO_SPREADS))


def evaluate_settings(settings: AnchorSettings, boxes: np.ndarray, threshold: float) -> Tuple[float, float]:
    """``(coverage, mean best IoU)`` of ``settings`` on ``boxes [K, 4]``."""
    best, _ = best_anchor_iou(boxes, settings.anchors())
    return float(np.mean(best >= threshold)), float(np.mean(best))


def search_settings(boxes: np.ndarray, current: AnchorSettings, threshold: float,
                    max_anchors_per_location: Optional[int] = None, search_num_scales: bool = False,
                    max_search_boxes: int = 20000, seed: int = 0) -> Tuple[List[Candidate], int]:
    """Searches aspect ratios x ``anchor_scale`` (x ``num_scales``) for the highest coverage.

    Args:
        boxes: ``[K, 4]`` boxes in input pixels.
        current: the detector's settings (the grid is centred on its ``anchor_scale``).
        threshold: the matched threshold.
        max_anchors_per_location: upper bound of ``num_scales x len(aspect_ratios)``;
            default the current count (the heads keep their shapes).
        search_num_scales: also try ``num_scales`` 1 … :data:`MAX_NUM_SCALES`.
        max_search_boxes: evaluate on a random subset of this many boxes.
        seed: the subset's seed.

    Returns:
        ``(candidates, boxes used)``: every setting tried, best first (coverage,
        then mean best IoU), the current settings among them.
    """
    limit = max_anchors_per_location or current.anchors_per_location
    if len(boxes) > max_search_boxes:
        boxes = boxes[np.random.default_rng(seed).choice(len(boxes), max_search_boxes, replace=False)]
    log_ratios = np.log((boxes[:, 3] - boxes[:, 1]) / (boxes[:, 2] - boxes[:, 0]))
    scale_options = range(1, MAX_NUM_SCALES + 1) if search_num_scales else (current.num_scales,)
    tried = {current: None}  # insertion-ordered set
    for num_scales in scale_options:
        count = limit // num_scales
        if count < 1:
            continue
        for ratios in candidate_ratio_sets(log_ratios, count):
            base = dataclasses.replace(current, num_scales=num_scales, aspect_ratios=ratios)
            tried.update(dict.fromkeys(base.scaled(step) for step in SCALE_STEPS))
    candidates = [Candidate(s, *evaluate_settings(s, boxes, threshold)) for s in tried]
    candidates.sort(key=lambda c: (-c.coverage, -c.mean_iou, c.settings != current))
    return candidates, len(boxes)


# --------------------------------------------------------------------------
# The figure
# --------------------------------------------------------------------------

_CURRENT, _SUGGESTED, _BARS, _INK = (0, 0, 0), (220, 40, 40), (90, 130, 200), (60, 60, 60)


def anchor_shapes(anchors: AnchorSet) -> np.ndarray:
    """``[levels * A, 2]`` ``(height, width)`` of every anchor shape (one location per level)."""
    shapes = [level[0, 0, :, 2:] - level[0, 0, :, :2] for _, _, _, level in _level_grids(anchors)]
    return np.concatenate(shapes)


class _LogAxis:
    """Maps ``log2`` values in ``[low, high]`` onto pixels ``[start, end]``."""

    def __init__(self, low, high, start, end):
        self.low, self.high, self.start, self.end = low, high, start, end

    def __call__(self, values):
        return self.start + (np.asarray(values, float) - self.low) / (self.high - self.low) * (self.end - self.start)


def _tick_label(exponent: int) -> str:
    value = 2.0 ** exponent
    return f"{value:g}" if value >= 1 else f"1/{2 ** -exponent:g}"


def _draw_size_panel(draw, font, box, widths, heights, current, suggested):
    """2-D histogram of box ``(width, height)`` on log2 axes with the anchor shapes."""
    left, top, right, bottom = box
    values = np.log2(np.concatenate([widths, heights, current.ravel(), suggested.ravel()]))
    low, high = max(math.floor(values.min()), 0), math.ceil(values.max())  # from 1 pixel up
    high = max(high, low + 1)
    widths, heights = np.clip(widths, 2.0 ** low, 2.0 ** high), np.clip(heights, 2.0 ** low, 2.0 ** high)
    x_axis, y_axis = _LogAxis(low, high, left, right), _LogAxis(low, high, bottom, top)
    bins = 48
    counts, _, _ = np.histogram2d(np.log2(widths), np.log2(heights), bins=bins, range=[[low, high], [low, high]])
    peak = math.log1p(counts.max()) or 1.0
    step = (high - low) / bins
    for i, j in zip(*np.nonzero(counts)):
        shade = math.log1p(counts[i, j]) / peak
        colour = tuple(int(255 - shade * (255 - c)) for c in (20, 60, 160))
        x0, x1 = x_axis([low + i * step, low + (i + 1) * step])
        y1, y0 = y_axis([low + j * step, low + (j + 1) * step])
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    draw.rectangle(box, outline=_INK)
    for exponent in range(low, high + 1):
        x, y = float(x_axis(exponent)), float(y_axis(exponent))
        draw.line((x, bottom, x, bottom + 4), fill=_INK)
        draw.text((x - 8, bottom + 6), _tick_label(exponent), fill=_INK, font=font)
        draw.line((left - 4, y, left, y), fill=_INK)
        draw.text((left - 36, y - 6), _tick_label(exponent), fill=_INK, font=font)
    draw.line((x_axis(low), y_axis(low), x_axis(high), y_axis(high)), fill=(200, 200, 200))  # w = h
    for height, width in current:
        x, y = float(x_axis(math.log2(width))), float(y_axis(math.log2(height)))
        draw.ellipse((x - 5, y - 5, x + 5, y + 5), outline=_CURRENT, width=2)
    for height, width in suggested:
        x, y = float(x_axis(math.log2(width))), float(y_axis(math.log2(height)))
        draw.line((x - 5, y - 5, x + 5, y + 5), fill=_SUGGESTED, width=2)
        draw.line((x - 5, y + 5, x + 5, y - 5), fill=_SUGGESTED, width=2)
    draw.text((left + 10, top - 28), "box width x height (input pixels, log scale; darker = more boxes)",
              fill=_INK, font=font)
    draw.text(((left + right) / 2 - 40, bottom + 22), "width (px)", fill=_INK, font=font)
    draw.text((left - 60, top - 26), "height (px)", fill=_INK, font=font)


def _draw_ratio_panel(draw, font, box, ratios, current, suggested):
    """Histogram of ``log2(w / h)`` with the current and suggested aspect ratios as lines."""
    left, top, right, bottom = box
    values = np.log2(np.concatenate([ratios, current, suggested]))
    low, high = math.floor(values.min()), math.ceil(values.max())
    low, high = min(low, -1), max(high, 1)
    x_axis = _LogAxis(low, high, left, right)
    counts, edges = np.histogram(np.log2(ratios), bins=40, range=(low, high))
    peak = max(int(counts.max()), 1)
    for count, (a, b) in zip(counts, zip(edges[:-1], edges[1:])):
        if count:
            y = bottom - count / peak * (bottom - top - 10)
            draw.rectangle((float(x_axis(a)) + 1, y, float(x_axis(b)) - 1, bottom), fill=_BARS)
    draw.rectangle(box, outline=_INK)
    for exponent in range(low, high + 1):
        x = float(x_axis(exponent))
        draw.line((x, bottom, x, bottom + 4), fill=_INK)
        draw.text((x - 8, bottom + 6), _tick_label(exponent), fill=_INK, font=font)
    draw.text((left - 30, top + 4), str(peak), fill=_INK, font=font)
    draw.text((left - 14, bottom - 12), "0", fill=_INK, font=font)
    for ratio in current:
        x = float(x_axis(math.log2(ratio)))
        draw.line((x, top, x, bottom), fill=_CURRENT, width=2)
    for ratio in suggested:
        x = float(x_axis(math.log2(ratio)))
        for y in range(top, bottom, 8):  # dashed
            draw.line((x, y, x, min(y + 4, bottom)), fill=_SUGGESTED, width=2)
    draw.text((left, top - 28), "aspect ratio w / h (log scale), boxes per bin", fill=_INK, font=font)
    draw.text(((left + right) / 2 - 40, bottom + 22), "w / h", fill=_INK, font=font)


def draw_figure(gt: GroundTruth, current: AnchorSettings, suggested: AnchorSettings, title: str,
                legend: Sequence[str]) -> Image.Image:
    """The ``boxes.png`` picture (module docstring), 1100 x 620 RGB.

    Args:
        gt: the boxes.
        current, suggested: anchor settings drawn as circles / crosses (sizes)
            and solid / dashed lines (aspect ratios).
        title: the first line of text.
        legend: two lines describing ``current`` and ``suggested``.
    """
    image = Image.new("RGB", (1100, 620), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    widths, heights = np.maximum(gt.widths, 1e-3), np.maximum(gt.heights, 1e-3)
    _draw_size_panel(draw, font, (80, 80, 520, 520), widths, heights, anchor_shapes(current.anchors()),
                     anchor_shapes(suggested.anchors()))
    _draw_ratio_panel(draw, font, (620, 80, 1070, 520), widths / heights,
                      [_ratio_value(r) for r in current.aspect_ratios],
                      [_ratio_value(r) for r in suggested.aspect_ratios])
    draw.text((20, 12), title, fill=_INK, font=font)
    draw.ellipse((20, 566, 30, 576), outline=_CURRENT, width=2)
    draw.text((40, 565), legend[0], fill=_CURRENT, font=font)
    draw.line((20, 588, 30, 598), fill=_SUGGESTED, width=2)
    draw.line((20, 598, 30, 588), fill=_SUGGESTED, width=2)
    draw.text((40, 587), legend[1], fill=_SUGGESTED, font=font)
    return image


# --------------------------------------------------------------------------
# The analysis and its report
# --------------------------------------------------------------------------


def _box_summary(gt: GroundTruth) -> dict:
    return {"size_sqrt_area": percentiles(np.sqrt(gt.heights * gt.widths)),
            "aspect_ratio_w_over_h": percentiles(gt.widths / gt.heights)}


def analyze(gt: GroundTruth, current: AnchorSettings, matched_threshold: float,
            names: Optional[Dict[int, str]] = None, max_anchors_per_location: Optional[int] = None,
            search_num_scales: bool = False, max_search_boxes: int = 20000, seed: int = 0,
            num_examples: int = 5, min_gain: float = 0.005) -> Tuple[dict, AnchorSettings]:
    """Coverage of the current settings, box statistics and the search (module docstring).

    The best setting found is suggested only when its coverage (on the searched
    boxes) beats the current one by more than ``min_gain``; otherwise the
    current settings are kept (the search's best is still in ``search.top``).
    The other arguments are those of :func:`search_settings` and
    :func:`unmatchable_examples`.

    Returns:
        ``(analysis, suggested settings)``: ``analysis`` is the JSON-ready dict
        written to ``analysis.json`` (``current``, ``boxes``, ``unmatchable``,
        ``search``, ``suggested``).
    """
    best, _ = best_anchor_iou(gt.boxes, current.anchors())
    candidates, searched = search_settings(gt.boxes, current, matched_threshold, max_anchors_per_location,
                                           search_num_scales, max_search_boxes, seed)
    baseline = next(c for c in candidates if c.settings == current)
    suggested = candidates[0].settings if candidates[0].coverage > baseline.coverage + min_gain else current
    suggested_best, _ = best_anchor_iou(gt.boxes, suggested.anchors())
    unmatched = best < matched_threshold
    analysis = {
        "current": {"settings": current.as_dict(), "config_lines": current.config_lines(),
                    "num_anchors": current.anchors().num_anchors,
                    "coverage": coverage_table(gt, best, matched_threshold, names)},
        "boxes": _box_summary(gt),
        "unmatchable": {"count": int(unmatched.sum()), "share": float(unmatched.mean()),
                        "examples": unmatchable_examples(gt, best, matched_threshold, names, num_examples)},
        "search": {"boxes_used": searched, "settings_tried": len(candidates),
                   "max_anchors_per_location": max_anchors_per_location or current.anchors_per_location,
                   "min_gain": min_gain,
                   "top": [c.as_dict() for c in candidates[:5]]},
        "suggested": {"settings": suggested.as_dict(), "config_lines": suggested.config_lines(),
                      "is_current": suggested == current,
                      "coverage": coverage_table(gt, suggested_best, matched_threshold, names)},
    }
    return analysis, suggested


def _percent(share: dict) -> str:
    return "   -  " if share["coverage"] is None else f"{100 * share['coverage']:5.1f}%"


def _coverage_lines(current: dict, suggested: dict) -> List[str]:
    rows = [("all boxes", current["all"], suggested["all"])]
    rows += [(f"{name} ({'<32²' if name == 'small' else '<96²' if name == 'medium' else '>=96²'})",
              current["sizes"][name], suggested["sizes"][name]) for name, _, _ in SIZE_BUCKETS]
    rows += [(f"class {name}", share, suggested["classes"][name]) for name, share in current["classes"].items()]
    lines = [f"  {'':24s} {'boxes':>7s}  {'current':>7s}  {'suggested':>9s}"]
    for label, now, then in rows:
        lines.append(f"  {label[:24]:24s} {now['boxes']:7d}  {_percent(now):>7s}  {_percent(then):>9s}")
    return lines


def _percentile_line(values: dict, digits: int) -> str:
    return "  ".join(f"{k} {v:.{digits}f}" for k, v in values.items())


def _settings_line(entry: dict) -> str:
    return f"{' '.join(entry['config_lines'])}  coverage {_percent(entry['coverage']['all']).strip()}"


def format_report(result: dict) -> str:
    """The printed report of an ``analysis.json`` dict."""
    data, current, suggested = result["data"], result["current"], result["suggested"]
    model = result["model"]
    height, width = model["image_size"]
    lines = [
        f"Anchor analysis for {model['name']} at {height}x{width}: levels {model['min_level']}-"
        f"{model['max_level']}, {current['settings']['anchors_per_location']} anchors per location, "
        f"{current['num_anchors']} anchors.",
        f"Read {data['num_records']} records from {data['num_files']} files: {data['num_boxes']} boxes"
        + (f" ({data['num_crowd']} crowd boxes left out, as training drops them)" if data["num_crowd"] else "")
        + ".",
    ]
    if data["truncated"]:
        lines.append(f"Stopped at --max_boxes={data['max_boxes']}: the records hold more boxes.")
    thresholds = result["matching"]
    lines += [
        f"Matching: IoU >= {thresholds['matched_threshold']:g} positive, < {thresholds['unmatched_threshold']:g} "
        f"negative ({thresholds['source']}).",
        "",
        f"Coverage (share of boxes whose best anchor has IoU >= {thresholds['matched_threshold']:g}; "
        "sizes in input pixels):",
        *_coverage_lines(current["coverage"], suggested["coverage"]),
        "",
        "Box size, sqrt(area) in input pixels: " + _percentile_line(result["boxes"]["size_sqrt_area"], 1),
        "Aspect ratio w/h:                     " + _percentile_line(result["boxes"]["aspect_ratio_w_over_h"], 2),
        "",
    ]
    unmatchable = result["unmatchable"]
    lines.append(f"Boxes no anchor matches (best IoU < {thresholds['matched_threshold']:g}): {unmatchable['count']} "
                 f"({100 * unmatchable['share']:.1f}%); force matching gives each only its one best anchor.")
    for example in unmatchable["examples"]:
        lines.append(f"  source_id {example['source_id']} {example['filename']!r} class {example['class']}: "
                     f"box {example['box']} size {example['size']:g} w/h {example['aspect_ratio']:g} "
                     f"best IoU {example['best_iou']:.3f}")
    search = result["search"]
    lines += [
        "",
        f"Search: k-means of log(w/h) spread x{min(RATIO_SPREADS):g}..x{max(RATIO_SPREADS):g}, anchor_scale "
        f"x{min(SCALE_STEPS):g}..x{max(SCALE_STEPS):g}, at most {search['max_anchors_per_location']} anchors per "
        f"location; {search['settings_tried']} settings on {search['boxes_used']} boxes.",
        f"  current:   {_settings_line(current)}",
        f"  suggested: {_settings_line(suggested)}",
    ]
    if suggested["is_current"]:
        best = search["top"][0]
        lines.append(f"Keep the current settings: the best found ({100 * best['coverage']:.1f}% on the searched "
                     f"boxes) is not more than {100 * search['min_gain']:g} percentage points better.")
    else:
        if suggested["settings"]["anchors_per_location"] != current["settings"]["anchors_per_location"]:
            lines.append("Note: another number of anchors per location changes the heads' output shapes "
                         "(their last layers are re-initialized when fine-tuning from a checkpoint).")
        lines += ["Paste into --hparams (comma-separated) or a YAML recipe's model section:",
                  *(f"  {line}" for line in suggested["config_lines"])]
    return "\n".join(lines)


def write_outputs(output_dir: str, result: dict, figure: Image.Image) -> List[str]:
    """Writes ``analysis.json`` and ``boxes.png`` together (both complete, or neither).

    Returns:
        The two paths.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = [os.path.join(output_dir, ANALYSIS_FILE), os.path.join(output_dir, FIGURE_FILE)]
    with atomic_files.FileSet(paths) as files:
        with open(files.temporaries[0], "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
            handle.write("\n")
        figure.save(files.temporaries[1], format="PNG")
    return paths


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def resolve_config(config_file=None, model_name=None, hparams=None, num_classes=None):
    """The experiment config of the detector to analyse for.

    Raises:
        ConfigError: bad config, unknown model, or a model without anchors.
    """
    overrides = [f"model.num_classes={int(num_classes)}"] if num_classes else []
    config = load_config(config_file, model_name, hparams, overrides)
    if not hasattr(config.model, "anchor_scale"):
        raise ConfigError(f"{config.model.name} is not a detector (it has no anchors); give a detector with "
                          "--model_name, e.g. efficientdet-d0.")
    return config


def run(args) -> Tuple[dict, List[str]]:
    """Resolves, reads, analyses and writes for parsed command-line ``args``; returns ``(result, paths)``."""
    label_map = args.label_map or nearby_label_map(args.file_pattern)
    names = load_label_map(label_map) if label_map else {}
    config = resolve_config(args.config, args.model_name, args.hparams, args.num_classes)
    model = config.model
    check_output_path(os.path.join(args.output_dir, ANALYSIS_FILE), "--output_dir")
    matched, unmatched, source = matching_thresholds(model)
    current = AnchorSettings.from_config(model)
    try:
        files = input_utils.list_files(args.file_pattern)
    except DatasetError:
        raise DatasetError(f"--file_pattern {args.file_pattern!r} matches no files; point it at detection "
                           "TFRecords (written by dataset/create_coco_tfrecord.py, dataset/create_pascal_tfrecord.py "
                           "or dataset/make_sample_dataset.py) and quote the glob.") from None
    gt = read_ground_truth(files, current.image_size, model.num_classes,
                           config.data.max_instances_per_image, args.max_boxes)
    if not len(gt.boxes):
        raise DatasetError(f"the records of --file_pattern {args.file_pattern!r} hold no boxes to analyse "
                           f"({gt.num_records} records, {gt.num_crowd} crowd boxes); point it at detection "
                           "records with objects.")
    analysis, suggested = analyze(gt, current, matched, names, args.max_anchors_per_location,
                                  args.search_num_scales, args.search_boxes, args.seed, args.num_examples,
                                  args.min_gain)
    result = {
        "model": {"name": model.name, "image_size": list(current.image_size), "min_level": current.min_level,
                  "max_level": current.max_level, "num_classes": model.num_classes},
        "matching": {"matched_threshold": matched, "unmatched_threshold": unmatched, "source": source},
        "data": {"file_pattern": args.file_pattern, "num_files": gt.num_files, "num_records": gt.num_records,
                 "num_boxes": int(len(gt.boxes)), "num_boxes_read": gt.num_read, "num_crowd": gt.num_crowd,
                 "max_boxes": args.max_boxes,
                 "truncated": gt.truncated, "label_map": label_map},
        **analysis,
    }
    legend = [f"current:   {_settings_line(analysis['current'])}",
              f"suggested: {_settings_line(analysis['suggested'])}"]
    title = (f"{len(gt.boxes)} boxes of {args.file_pattern} in the {current.image_size[0]}x{current.image_size[1]} "
             f"input of {model.name}")
    paths = write_outputs(args.output_dir, result, draw_figure(gt, current, suggested, title, legend))
    return result, paths


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file_pattern", required=True, help="Detection TFRecord glob (quote it).")
    parser.add_argument("--output_dir", required=True, help="Where analysis.json and boxes.png go.")
    parser.add_argument("--model_name", default=None, help="Detector whose anchors are analysed "
                                                           "(default efficientdet-d0).")
    parser.add_argument("--config", default=None, help="Optional YAML recipe.")
    parser.add_argument("--hparams", default=None, help="Comma-separated config overrides, as in main.py.")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="Shortcut for model.num_classes (class ids are checked against it).")
    parser.add_argument("--label_map", default=None,
                        help="Class names: JSON/YAML {name: id} or {id: name}, or a text file "
                             "(default: a label_map.* next to the records or one folder up).")
    parser.add_argument("--max_boxes", type=int, default=200000,
                        help="Read at most this many boxes (logged when it cuts; default 200000).")
    parser.add_argument("--max_anchors_per_location", type=int, default=None,
                        help="Let the search use up to this many anchors per location (default: the current "
                             "num_scales x len(aspect_ratios)).")
    parser.add_argument("--search_num_scales", action="store_true",
                        help=f"Also search num_scales (1..{MAX_NUM_SCALES}).")
    parser.add_argument("--search_boxes", type=int, default=20000,
                        help="Boxes (a random subset) the search evaluates on; the result is re-measured on all.")
    parser.add_argument("--min_gain", type=float, default=0.005,
                        help="Suggest a change only if it raises the coverage by more than this (default 0.005).")
    parser.add_argument("--num_examples", type=int, default=5, help="Unmatchable boxes listed.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the search subset.")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    for flag in ("max_boxes", "search_boxes", "max_anchors_per_location"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            print(f"error: --{flag} must be >= 1, got {value}.", file=sys.stderr)
            return 2
    try:
        result, paths = run(args)
    except ConfigError as error:
        hint = ("" if "registered" not in str(error)
                else " Run the tool as python -m efficientdet.analyze_boxes, which registers the detectors.")
        print(f"error: {error}{hint}", file=sys.stderr)
        return 2
    except (DatasetError, LabelMapError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:  # the label map
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # writing the outputs
        print(f"error: cannot write to --output_dir {args.output_dir!r} ({error.strerror or error}); check the "
              "path, free space and permissions.", file=sys.stderr)
        return 2
    print(format_report(result))
    print("wrote " + ", ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
