"""Drawing of the synthetic sample images (shapes on noisy, textured backgrounds).

Classes are chosen to be easy to tell apart by shape *and* colour, so a small
model learns them in a few minutes on a CPU: the sample data checks that
training works end to end, it is not a benchmark of accuracy.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
from PIL import Image, ImageDraw

# name → base RGB colour; the order gives the 1-based detection ids / 0-based classification ids.
SHAPES = {
    "circle": (220, 50, 40),
    "square": (40, 190, 60),
    "triangle": (40, 80, 225),
    "cross": (235, 200, 30),
}


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random colour field plus stripes and pixel noise, uint8 ``[h, w, 3]``."""
    coarse = rng.uniform(60, 190, size=(4, 4, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
    period = rng.uniform(6, 24)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    field += 12.0 * stripes[..., None]
    field += rng.normal(0, 10, size=field.shape)
    # Pull towards grey so that objects stay more saturated than the background.
    field = 0.6 * field + 0.4 * field.mean(axis=-1, keepdims=True)
    return np.clip(field, 0, 255).astype(np.uint8)


def _colour(rng, name):
    base = np.array(SHAPES[name], np.float32)
    return tuple(int(c) for c in np.clip(base * rng.uniform(0.75, 1.1) + rng.normal(0, 12, 3), 0, 255))


def draw_shape(draw: ImageDraw.ImageDraw, name: str, box: Tuple[int, int, int, int], fill) -> None:
    """Draws ``name`` filling the inclusive pixel box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    if name == "circle":
        draw.ellipse(box, fill=fill)
    elif name == "square":
        draw.rectangle(box, fill=fill)
    elif name == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2.0, y0)], fill=fill)
    elif name == "cross":
        tw, th = (x1 - x0) // 3, (y1 - y0) // 3
        draw.rectangle((x0 + tw, y0, x1 - tw, y1), fill=fill)
        draw.rectangle((x0, y0 + th, x1, y1 - th), fill=fill)
    else:
        raise ValueError(f"unknown shape {name!r}; known: {sorted(SHAPES)}")


def _iou(a, b):
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return inter / float(area(a) + area(b) - inter)


def detection_image(rng: np.random.Generator, size: int, class_names, max_objects: int = 4,
                    min_frac: float = 0.2, max_frac: float = 0.5):
    """One detection image.

    Returns:
        ``(image uint8 [size, size, 3], objects)`` with objects
        ``[(class_index, (x, y, w, h), visible_area)]`` in COCO pixel
        convention (pixel ``i`` spans ``[i, i + 1)``).
    """
    image = Image.fromarray(background(rng, size, size))
    draw = ImageDraw.Draw(image)
    owner = np.full((size, size), -1, np.int32)
    placed: List[Tuple[int, Tuple[int, int, int, int]]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            cls = int(rng.integers(len(class_names)))
            side_w = int(rng.uniform(min_frac, max_frac) * size)
            side_h = int(np.clip(side_w * rng.uniform(0.8, 1.25), min_frac * size, max_frac * size))
            x0 = int(rng.integers(0, size - side_w))
            y0 = int(rng.integers(0, size - side_h))
            rect = (x0, y0, x0 + side_w, y0 + side_h)
            if all(_iou(rect, other) < 0.15 for _, other in placed):
                break
        else:
            continue
        draw_shape(draw, class_names[cls], (rect[0], rect[1], rect[2] - 1, rect[3] - 1), _colour(rng, class_names[cls]))
        mask = Image.new("L", (size, size), 0)
        draw_shape(ImageDraw.Draw(mask), class_names[cls], (rect[0], rect[1], rect[2] - 1, rect[3] - 1), 255)
        owner[np.asarray(mask) > 0] = len(placed)
        placed.append((cls, rect))
    objects = []
    for index, (cls, rect) in enumerate(placed):
        visible = np.argwhere(owner == index)
        if visible.size == 0:  # fully covered by later shapes: not an object any more
            continue
        (y0, x0), (y1, x1) = visible.min(0), visible.max(0) + 1
        objects.append((cls, (int(x0), int(y0), int(x1 - x0), int(y1 - y0)), int(len(visible))))
    return np.asarray(image), objects


def classification_image(rng: np.random.Generator, size: int, name: str) -> np.ndarray:
    """One image with a single ``name`` shape covering 40–80 % of the side."""
    image = Image.fromarray(background(rng, size, size))
    side = int(rng.uniform(0.4, 0.8) * size)
    x0 = int(rng.integers(0, size - side + 1))
    y0 = int(rng.integers(0, size - side + 1))
    draw_shape(ImageDraw.Draw(image), name, (x0, y0, x0 + side - 1, y0 + side - 1), _colour(rng, name))
    return np.asarray(image)
