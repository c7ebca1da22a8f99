"""The one parser of network input sizes used across the toolkit.

Every image size (config values, anchors, input pipelines, export wrappers) is
``(height, width)``; a single int means a square. Strings are refused on
purpose: the official google/automl ``"WxH"`` strings put the width first, so
guessing the order would silently transpose a non-square detector.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np

ImageSize = Union[int, Sequence[int]]


def parse_image_size(image_size: ImageSize) -> Tuple[int, int]:
    """Returns ``(height, width)`` from an int or a ``(height, width)`` pair.

    Args:
        image_size: a positive int (square) or a length-2 sequence of positive
            integral values (ints, NumPy ints or integral floats).

    Returns:
        A ``(height, width)`` tuple of Python ints.

    Raises:
        ValueError: for a string, a non-integral or non-positive value, or a
            sequence that is not of length 2.
    """
    if isinstance(image_size, (str, bytes)):
        raise ValueError(
            f"image_size {image_size!r} must be an int or a (height, width) pair, not a string."
        )
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (image_size, image_size)
    else:
        try:
            size = tuple(image_size)
        except TypeError:
            size = ()
    try:
        ok = len(size) == 2 and all(int(v) == v and v > 0 for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"image_size {image_size!r} must be a positive int or (height, width) pair of positive ints."
        )
    return int(size[0]), int(size[1])
