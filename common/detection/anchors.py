"""Multi-level anchor boxes of RetinaNet-style detectors (EfficientDet).

EfficientDet (Tan, Pang & Le 2020, Sec. 3 and 5.1) reuses the RetinaNet anchor
design (Lin et al. 2017, "Focal Loss for Dense Object Detection", Sec. 4): on
every pyramid level ``P_l`` (``min_level`` … ``max_level``) each feature-map
location carries ``num_scales × len(aspect_ratios)`` anchors whose base side is
``anchor_scale × stride_l`` multiplied by the octave scales ``2**(i/num_scales)``.

Behaviour follows the official google/automl generator, so the boxes are the
same numbers the released checkpoints were trained with:

* the feature size of level ``l`` is obtained by halving ``l`` times with
  ``ceil`` (``(s - 1) // 2 + 1``), also for sizes not divisible by ``2**l``;
* the stride of a level is ``image_size / feature_size`` (a float, per axis),
  not ``2**l``; anchor centres sit at ``stride / 2 + k * stride``;
* an aspect ratio ``a`` (width / height) scales the width by ``sqrt(a)`` and the
  height by ``1 / sqrt(a)``, keeping the area; a pair ``(ax, ay)`` gives the two
  factors explicitly;
* boxes are in input-image pixels, ``(ymin, xmin, ymax, xmax)``, ordered by
  level, then row ``y``, then column ``x``, then the anchors of one location as
  (octave scale) × (aspect ratio) with the aspect ratio varying fastest. This
  matches the channel layout of the heads (``anchor * num_classes + class``).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence, Tuple, Union

import numpy as np

from common.detection.image_size import ImageSize, parse_image_size


def feature_sizes(image_size: ImageSize, max_level: int) -> list:
    """Spatial sizes of pyramid levels ``0 … max_level``.

    Args:
        image_size: input size, int or ``(height, width)``.
        max_level: highest pyramid level.

    Returns:
        A list of ``max_level + 1`` pairs ``(height_l, width_l)``; entry 0 is the
        image itself and each following level halves the previous one, rounding
        up (what stride-2 ``same`` convolutions and pooling produce).
    """
    height, width = parse_image_size(image_size)
    sizes = [(height, width)]
    for _ in range(max_level):
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        sizes.append((height, width))
    return sizes


def _aspect_factors(aspect) -> Tuple[float, float]:
    if isinstance(aspect, (list, tuple)):
        if len(aspect) != 2:
            raise ValueError(f"aspect ratio {aspect!r} must be a number or an (x, y) pair.")
        return float(aspect[0]), float(aspect[1])
    if aspect <= 0:
        raise ValueError(f"aspect ratio {aspect!r} must be positive.")
    x_factor = float(np.sqrt(aspect))
    return x_factor, 1.0 / x_factor


def generate_anchors(
    image_size: ImageSize,
    min_level: int = 3,
    max_level: int = 7,
    num_scales: int = 3,
    aspect_ratios: Sequence = (1.0, 2.0, 0.5),
    anchor_scale: Union[float, Sequence[float]] = 4.0,
) -> np.ndarray:
    """Generates the anchors of all levels.

    Args:
        image_size: network input size, int or ``(height, width)``.
        min_level: lowest pyramid level (P3 for EfficientDet).
        max_level: highest pyramid level (P7).
        num_scales: octave scales per level, ``2**(i / num_scales)`` for
            ``i = 0 … num_scales - 1``.
        aspect_ratios: width/height ratios, or ``(x, y)`` factor pairs.
        anchor_scale: base anchor size relative to the stride; one float, or one
            value per level.

    Returns:
        float32 array ``[N, 4]`` of ``(ymin, xmin, ymax, xmax)`` in pixels with
        ``N = sum_l H_l * W_l * num_scales * len(aspect_ratios)`` (49,104 for
        D0 at 512×512).
    """
    height, width = parse_image_size(image_size)
    num_levels = max_level - min_level + 1
    if isinstance(anchor_scale, (list, tuple)):
        if len(anchor_scale) != num_levels:
            raise ValueError(
                f"anchor_scale has {len(anchor_scale)} values but levels {min_level}..{max_level} "
                f"need {num_levels}; give one float or one value per level."
            )
        scales = [float(s) for s in anchor_scale]
    else:
        scales = [float(anchor_scale)] * num_levels
    sizes = feature_sizes((height, width), max_level)

    per_level = []
    for level in range(min_level, max_level + 1):
        feat_h, feat_w = sizes[level]
        stride_y = height / float(feat_h)
        stride_x = width / float(feat_w)
        centers_y = np.arange(stride_y / 2, height, stride_y)[:feat_h]
        centers_x = np.arange(stride_x / 2, width, stride_x)[:feat_w]
        grid_x, grid_y = np.meshgrid(centers_x, centers_y)
        grid_y = grid_y.reshape(-1, 1)
        grid_x = grid_x.reshape(-1, 1)

        half_h, half_w = [], []
        for octave in range(num_scales):
            octave_scale = 2.0 ** (octave / float(num_scales))
            for aspect in aspect_ratios:
                x_factor, y_factor = _aspect_factors(aspect)
                base = scales[level - min_level] * octave_scale
                half_w.append(base * stride_x * x_factor / 2.0)
                half_h.append(base * stride_y * y_factor / 2.0)
        half_h = np.asarray(half_h)[None, :]
        half_w = np.asarray(half_w)[None, :]
        boxes = np.stack(
            [grid_y - half_h, grid_x - half_w, grid_y + half_h, grid_x + half_w], axis=-1
        )  # [H*W, A, 4]
        per_level.append(boxes.reshape(-1, 4))
    return np.concatenate(per_level, axis=0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class AnchorSet:
    """Anchors plus the per-level layout needed to split flat per-anchor tensors.

    Attributes:
        boxes: float32 ``[N, 4]`` anchors, ``(ymin, xmin, ymax, xmax)`` pixels.
        image_size: ``(height, width)`` the anchors were generated for.
        min_level: lowest level.
        max_level: highest level.
        level_sizes: ``(H_l, W_l)`` per level, ``min_level`` first.
        anchors_per_location: ``num_scales * len(aspect_ratios)``.
    """

    boxes: np.ndarray
    image_size: Tuple[int, int]
    min_level: int
    max_level: int
    level_sizes: Tuple[Tuple[int, int], ...]
    anchors_per_location: int

    @property
    def num_anchors(self) -> int:
        return int(self.boxes.shape[0])

    def level_counts(self) -> list:
        """Number of anchors on each level, ``min_level`` first."""
        return [h * w * self.anchors_per_location for h, w in self.level_sizes]

    @classmethod
    def build(
        cls,
        image_size: ImageSize,
        min_level: int = 3,
        max_level: int = 7,
        num_scales: int = 3,
        aspect_ratios: Sequence = (1.0, 2.0, 0.5),
        anchor_scale: Union[float, Sequence[float]] = 4.0,
    ) -> "AnchorSet":
        """Generates the anchors; arguments as in :func:`generate_anchors`."""
        size = parse_image_size(image_size)
        boxes = generate_anchors(size, min_level, max_level, num_scales, aspect_ratios, anchor_scale)
        levels = feature_sizes(size, max_level)[min_level:]
        return cls(
            boxes=boxes,
            image_size=size,
            min_level=min_level,
            max_level=max_level,
            level_sizes=tuple(tuple(s) for s in levels),
            anchors_per_location=num_scales * len(aspect_ratios),
        )

    @classmethod
    def from_config(cls, model_config) -> "AnchorSet":
        """The anchors of a detector config.

        Args:
            model_config: any object with the attributes ``image_size``,
                ``min_level``, ``max_level``, ``num_scales``, ``aspect_ratios``
                and ``anchor_scale`` (e.g. an EfficientDet model config; read by
                attribute so this package needs no model import).

        Returns:
            The :class:`AnchorSet` with ``boxes`` float32 ``[N, 4]`` for that
            input size and anchor layout.
        """
        return cls.build(
            model_config.image_size,
            min_level=model_config.min_level,
            max_level=model_config.max_level,
            num_scales=model_config.num_scales,
            aspect_ratios=tuple(model_config.aspect_ratios),
            anchor_scale=model_config.anchor_scale,
        )
