"""Training augmentation of EfficientDet: random horizontal flip and scale
jitter with a random crop, as the official google/automl input pipeline does
(EfficientDet paper Sec. 5.1: "scale jittering [0.1, 2.0]").

Scale jitter: draw ``s ~ U(jitter_min, jitter_max)``; resize the image keeping
its aspect ratio so that it fits ``s × output_size``; take a random
``output_size`` window of the result (anchored at the top-left when the image
is smaller, then padded bottom/right with zeros). Boxes follow the image, are
clipped to the window, and boxes left with no area are dropped; the number
dropped is returned so the pipeline can report it.

All randomness is stateless on an explicit ``seed`` (int ``[2]``).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import tensorflow as tf


def random_horizontal_flip(image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor):
    """Flips the image and its normalised boxes with probability 0.5.

    Args:
        image: ``[h, w, C]``.
        boxes: ``[M, 4]`` normalised ``(ymin, xmin, ymax, xmax)``.
        seed: int ``[2]``.

    Returns:
        ``(image, boxes)``.
    """
    flip = tf.random.stateless_uniform([], seed) < 0.5

    def flipped():
        ymin, xmin, ymax, xmax = tf.unstack(boxes, num=4, axis=-1)
        return tf.image.flip_left_right(image), tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)

    return tf.cond(flip, flipped, lambda: (image, boxes))


def scale_jitter_crop(
    image: tf.Tensor,
    boxes: tf.Tensor,
    output_size: Sequence[int],
    jitter_min: float,
    jitter_max: float,
    seed: tf.Tensor,
    window_fn: Optional[Callable[[tf.Tensor], tf.Tensor]] = None,
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Random scale, random crop, pad (module docstring).

    Args:
        image: ``[h, w, C]``.
        boxes: ``[M, 4]`` normalised ``(ymin, xmin, ymax, xmax)``.
        output_size: ``(height, width)``.
        jitter_min: smallest scale.
        jitter_max: largest scale.
        seed: int ``[2]``.
        window_fn: applied to the cropped window before zero padding, e.g. the
            normalisation (cheaper on the window than on the whole image, and
            the padding is then the mean colour, as in the official pipeline).

    Returns:
        ``(image, boxes, keep, image_scale)``: float32 ``[height, width, C]``;
        ``[M, 4]`` boxes in output pixels, clipped to the window; bool ``[M]``
        that is False for boxes left without area; float32 scalar original
        pixels per output pixel.
    """
    out_h, out_w = int(output_size[0]), int(output_size[1])
    seeds = tf.random.experimental.stateless_split(seed, 3)
    shape = tf.shape(image)
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    jitter = tf.random.stateless_uniform([], seeds[0], jitter_min, jitter_max)
    scale = tf.minimum(jitter * out_h / height, jitter * out_w / width)
    new_h = tf.maximum(1, tf.cast(height * scale, tf.int32))
    new_w = tf.maximum(1, tf.cast(width * scale, tf.int32))
    offset_y = tf.cast(tf.cast(tf.maximum(0, new_h - out_h), tf.float32)
                       * tf.random.stateless_uniform([], seeds[1]), tf.int32)
    offset_x = tf.cast(tf.cast(tf.maximum(0, new_w - out_w), tf.float32)
                       * tf.random.stateless_uniform([], seeds[2]), tf.int32)
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.stack([new_h, new_w]))
    window = resized[offset_y:offset_y + out_h, offset_x:offset_x + out_w]
    if window_fn is not None:
        window = window_fn(window)
    padded = tf.image.pad_to_bounding_box(window, 0, 0, out_h, out_w)
    padded = tf.ensure_shape(padded, [out_h, out_w, image.shape[-1]])

    size = tf.cast(tf.stack([new_h, new_w, new_h, new_w]), tf.float32)
    offset = tf.cast(tf.stack([offset_y, offset_x, offset_y, offset_x]), tf.float32)
    limit_h = tf.cast(tf.minimum(out_h, new_h - offset_y), tf.float32)
    limit_w = tf.cast(tf.minimum(out_w, new_w - offset_x), tf.float32)
    pixel = boxes * size - offset
    ymin, xmin, ymax, xmax = tf.unstack(pixel, num=4, axis=-1)
    clipped = tf.stack([tf.clip_by_value(ymin, 0.0, limit_h), tf.clip_by_value(xmin, 0.0, limit_w),
                        tf.clip_by_value(ymax, 0.0, limit_h), tf.clip_by_value(xmax, 0.0, limit_w)], axis=-1)
    keep = tf.logical_and(clipped[:, 2] > clipped[:, 0], clipped[:, 3] > clipped[:, 1])
    return padded, clipped, keep, 1.0 / scale
