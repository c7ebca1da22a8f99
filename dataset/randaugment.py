"""RandAugment (Cubuk et al. 2020, "RandAugment", Sec. 3) for uint8 images in ``tf.data``.

``num_layers`` times, pick one operation uniformly and apply it with strength
``magnitude``. Magnitudes use the official scale where 10 is the "maximum
level" (:data:`MAX_LEVEL`) but larger values are allowed, as EfficientNetV2's
progressive schedule uses 5 → 15 (Tan & Le 2021, Table 6). Every strength
grows with the magnitude (for posterize and solarize too, unlike the original
TF reference implementation):

==============================  =========================================
operation                       at magnitude m (``r = m / 10``)
==============================  =========================================
AutoContrast, Equalize, Invert  no strength
Rotate                          ±30·r degrees
ShearX / ShearY                 ±0.3·r
TranslateX / TranslateY         ±0.45·r of the image side (≤ 1)
Color, Contrast, Brightness,    blend factor 1 ± 0.9·r (≥ 0)
Sharpness
Posterize                       keep 8 − 4·r bits (≥ 1)
Solarize                        invert pixels above 256 − 256·r
SolarizeAdd                     add 110·r to pixels below 128
==============================  =========================================

Geometric operations fill uncovered pixels with grey (128). Randomness is
stateless on an explicit seed, so results are reproducible.

We do not use ``keras.layers.RandAugment``: it works in ``tf.data`` but its
strength is capped at ``factor=1`` (no magnitude 15), it evaluates every
operation's random parameters on every call, and its stateful seed generator
cannot make a parallel pipeline reproducible.
"""
from __future__ import annotations

import math

import tensorflow as tf

MAX_LEVEL = 10.0
FILL_VALUE = 128.0


def _blend(degenerate, image, factor):
    return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def _grayscale(image):
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


def _transform(image, matrix):
    """Applies a projective ``matrix`` (8 values, output → input pixel map)."""
    shape = tf.shape(image)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.reshape(tf.cast(matrix, tf.float32), [1, 8]),
        output_shape=shape[:2], fill_value=FILL_VALUE, interpolation="BILINEAR", fill_mode="CONSTANT")
    return out[0]


def _rotate(image, degrees):
    shape = tf.cast(tf.shape(image), tf.float32)
    h, w = shape[0], shape[1]
    angle = degrees * math.pi / 180.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Rotation about the centre: input = R^-1 (output - c) + c.
    x_offset = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
    y_offset = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
    return _transform(image, [cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])


def _equalize(image):
    def channel(values):
        values = tf.cast(values, tf.int32)
        hist = tf.math.bincount(tf.reshape(values, [-1]), minlength=256, maxlength=256)
        nonzero = tf.boolean_mask(hist, hist > 0)
        step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255

        def equalized():
            lut = (tf.cumsum(hist) + step // 2) // tf.maximum(step, 1)
            lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
            return tf.cast(tf.gather(lut, values), tf.float32)

        return tf.cond(step > 0, equalized, lambda: tf.cast(values, tf.float32))

    return tf.stack([channel(image[..., c]) for c in range(3)], axis=-1)


def _autocontrast(image):
    low = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    high = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    scale = 255.0 / tf.maximum(high - low, 1.0)
    return tf.where(high > low, (image - low) * scale, image)


def _sharpness_degenerate(image):
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    border = tf.pad(tf.ones_like(smooth[1:-1, 1:-1, :1]), [[1, 1], [1, 1], [0, 0]])
    return tf.where(border > 0, smooth, image)  # the border stays unchanged


def _posterize(image, bits):
    shift = 8 - bits
    return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(tf.cast(image, tf.int32), shift), shift), tf.float32)


def _ops(image, level, sign):
    """The operations as zero-argument callables (for ``tf.switch_case``)."""
    r = level / MAX_LEVEL
    enhance = tf.maximum(0.0, 1.0 + sign * 0.9 * r)
    shape = tf.cast(tf.shape(image), tf.float32)
    translate = tf.minimum(0.45 * r, 1.0) * sign
    shear = 0.3 * r * sign
    bits = tf.cast(tf.clip_by_value(tf.round(8.0 - 4.0 * r), 1.0, 8.0), tf.int32)
    return [
        lambda: _autocontrast(image),
        lambda: _equalize(image),
        lambda: 255.0 - image,
        lambda: _rotate(image, 30.0 * r * sign),
        lambda: _transform(image, [1.0, shear, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
        lambda: _transform(image, [1.0, 0.0, 0.0, shear, 1.0, 0.0, 0.0, 0.0]),
        lambda: _transform(image, [1.0, 0.0, -translate * shape[1], 0.0, 1.0, 0.0, 0.0, 0.0]),
        lambda: _transform(image, [1.0, 0.0, 0.0, 0.0, 1.0, -translate * shape[0], 0.0, 0.0]),
        lambda: _blend(_grayscale(image), image, enhance),
        lambda: _blend(tf.fill(tf.shape(image), tf.reduce_mean(tf.image.rgb_to_grayscale(image))), image, enhance),
        lambda: _blend(tf.zeros_like(image), image, enhance),
        lambda: _blend(_sharpness_degenerate(image), image, enhance),
        lambda: _posterize(image, bits),
        lambda: tf.where(image >= 256.0 - 256.0 * r, 255.0 - image, image),
        lambda: tf.where(image < 128.0, tf.minimum(image + 110.0 * r, 255.0), image),
    ]


OP_NAMES = ("AutoContrast", "Equalize", "Invert", "Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY",
            "Color", "Contrast", "Brightness", "Sharpness", "Posterize", "Solarize", "SolarizeAdd")


def apply_op(image: tf.Tensor, index, magnitude: float, sign=1.0) -> tf.Tensor:
    """Applies operation ``OP_NAMES[index]`` to a float ``[H, W, 3]`` image in 0…255."""
    image = tf.cast(image, tf.float32)
    branches = _ops(image, tf.constant(float(magnitude)), tf.cast(sign, tf.float32))
    out = tf.switch_case(tf.cast(index, tf.int32), branches)
    return tf.ensure_shape(tf.clip_by_value(out, 0.0, 255.0), image.shape)


def randaugment(image: tf.Tensor, magnitude: float, num_layers: int, seed: tf.Tensor) -> tf.Tensor:
    """RandAugment of one image.

    Args:
        image: ``[H, W, 3]`` RGB in 0…255 (uint8 or float).
        magnitude: strength, 10 = the official maximum level (module docstring).
        num_layers: operations applied in sequence.
        seed: int ``[2]`` stateless seed.

    Returns:
        float32 ``[H, W, 3]`` in 0…255 (rounded to integers, like a uint8 image).
    """
    out = tf.round(tf.cast(image, tf.float32))
    seeds = tf.random.experimental.stateless_split(seed, 2 * num_layers)
    for layer in range(num_layers):
        index = tf.random.stateless_uniform([], seeds[2 * layer], 0, len(OP_NAMES), dtype=tf.int32)
        sign = tf.where(tf.random.stateless_uniform([], seeds[2 * layer + 1]) < 0.5, -1.0, 1.0)
        out = tf.round(apply_op(out, index, magnitude, sign))
    return out
