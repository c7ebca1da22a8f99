"""Drawing detections and classifications on images (Pillow)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common.export.label_map import label_name

_PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


def _font(image_height):
    size = max(10, image_height // 40)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _font_height(font):
    return getattr(font, "size", 11)


def _label(draw, xy, text, color, font):
    left, top, right, bottom = draw.textbbox(xy, text, font=font)
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=color)
    draw.text(xy, text, fill=(0, 0, 0), font=font)


def draw_detections(image, boxes, scores, classes, label_map=None, min_score=0.4, max_boxes=100):
    """Draws boxes with ``name: score`` labels.

    Args:
        image: uint8 ``[H, W, 3]``.
        boxes: ``[D, 4]`` ``(ymin, xmin, ymax, xmax)`` in image pixels.
        scores: ``[D]``; rows below ``min_score`` are not drawn. None: ground
            truth, every box drawn and labelled with its name only.
        classes: ``[D]`` 1-based class ids (0 = padding, never drawn).
        label_map: ``{id: name}``; unknown ids are shown as numbers.
        min_score: drawing threshold.
        max_boxes: at most this many boxes (highest scores first).

    Returns:
        ``(PIL.Image, number of boxes drawn)``.
    """
    labels_only = scores is None
    if labels_only:
        scores = np.ones(len(boxes), np.float32)
    canvas = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    font = _font(canvas.height)
    width = max(1, round(max(canvas.size) / 300))
    order = np.argsort(-np.asarray(scores), kind="stable")
    drawn = 0
    for i in order:
        if drawn >= max_boxes or scores[i] < min_score:
            break
        if int(classes[i]) <= 0:
            continue
        ymin, xmin, ymax, xmax = (float(v) for v in boxes[i])
        color = _PALETTE[int(classes[i]) % len(_PALETTE)]
        draw.rectangle((xmin, ymin, xmax, ymax), outline=color, width=width)
        text = label_name(label_map or {}, classes[i])
        if not labels_only:
            text = f"{text}: {scores[i]:.2f}"
        _label(draw, (xmin + width, max(0.0, ymin - _font_height(font) - 2)), text, color, font)
        drawn += 1
    return canvas, drawn


def draw_classification(image, top_classes, top_probabilities, label_map=None):
    """Writes the top-k ``name: probability`` lines in the top-left corner.

    Args:
        image: uint8 ``[H, W, 3]``.
        top_classes: ``[k]`` 0-based class ids, best first.
        top_probabilities: ``[k]``.
        label_map: ``{id: name}``.

    Returns:
        ``(PIL.Image, k)``.
    """
    canvas = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    font = _font(max(canvas.height, 400))
    y = 2
    for rank, (cls, prob) in enumerate(zip(top_classes, top_probabilities)):
        text = f"{label_name(label_map or {}, cls)}: {prob:.3f}"
        _label(draw, (2, y), text, _PALETTE[rank % len(_PALETTE)], font)
        y += _font_height(font) + 4
    return canvas, len(top_classes)
