"""Image normalisation and resizing shared by the input pipelines and export.

Pure TensorFlow functions on single images ``[h, w, 3]`` (RGB, values 0…255),
usable inside ``tf.data`` and inside an exported graph, so training,
evaluation and serving see identical pixels.

Normalisations (:data:`NORMALIZATIONS`, ``(x - mean) / std`` in 0…255 units,
one name per family of official checkpoints):

* ``imagenet_mean_std``: the ImageNet mean and standard deviation
  (EfficientDet D0–D7x, EfficientNet V1 B0–B7);
* ``scale_128``: ``(x - 128) / 128`` (EfficientNetV2);
* ``scale_127``: ``(x - 127) / 128`` (EfficientDet-Lite, EfficientNet-Lite:
  symmetric around zero for int8 quantization).

Detection (as the official google/automl code): normalise, then
:func:`resize_and_pad` — scale so the image fits the network input keeping its
aspect ratio, pad bottom/right with zeros. Because padding happens after
normalisation, padded pixels equal the mean colour. Classification: normalise
after a crop (:func:`center_crop` for evaluation and export).
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import tensorflow as tf

from common.detection.image_size import parse_image_size

from dataset.normalizations import (  # noqa: F401  (re-exported: the pipelines' names)
    CLASSIFICATION_METHODS,
    CROP_PADDING,
    DETECTION_NORMALIZATION,
    MEAN_RGB,
    NO_CROP_FROM,
    NORMALIZATIONS,
    STDDEV_RGB,
    uses_center_crop,
)

ImageSize = Union[int, Sequence[int]]


def _mean_std(method):
    if method not in NORMALIZATIONS:
        raise ValueError(f"preprocessing method {method!r} is not one of {tuple(NORMALIZATIONS)}.")
    return NORMALIZATIONS[method]


def normalize_image(image: tf.Tensor, method: str = DETECTION_NORMALIZATION) -> tf.Tensor:
    """``(image - mean) / std`` of normalisation ``method`` as float32.

    Args:
        image: ``[..., 3]`` RGB in 0…255 (any real dtype).
        method: a name of :data:`NORMALIZATIONS`.

    Returns:
        float32 tensor of the same shape.
    """
    mean, stddev = _mean_std(method)
    image = tf.cast(image, tf.float32)
    if len(set(mean)) == 1 and len(set(stddev)) == 1:
        return (image - mean[0]) / stddev[0]
    shape = tf.shape(image)
    # Explicit broadcast_to: the implicit [..., 3] broadcast is about 2x slower on CPU.
    mean = tf.broadcast_to(tf.constant(mean, tf.float32), shape)
    stddev = tf.broadcast_to(tf.constant(stddev, tf.float32), shape)
    return (image - mean) / stddev


def denormalize_image(image, method: str = DETECTION_NORMALIZATION):
    """The inverse of :func:`normalize_image` as uint8 NumPy (for pictures)."""
    mean, stddev = _mean_std(method)
    pixels = np.asarray(image, np.float32) * np.array(stddev, np.float32) + np.array(mean, np.float32)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def normalize_detection_image(image: tf.Tensor, method: str = DETECTION_NORMALIZATION) -> tf.Tensor:
    """:func:`normalize_image` with the EfficientDet D0–D7x default."""
    return normalize_image(image, method)


def normalize_classification_image(image: tf.Tensor, method: str = "scale_128") -> tf.Tensor:
    """:func:`normalize_image` with the EfficientNetV2 default."""
    return normalize_image(image, method)


def resize_and_pad(image: tf.Tensor, image_size: ImageSize, method: str = "bilinear", window_fn=None):
    """Letterbox: resize keeping the aspect ratio so the image fits, pad bottom/right.

    Args:
        image: ``[h, w, C]`` (any numeric dtype; resized as float32).
        image_size: output ``(height, width)`` or an int.
        method: ``tf.image.resize`` method.
        window_fn: optional function applied to the resized image before padding.

    Returns:
        ``(padded, image_scale)``: float32 ``[height, width, C]`` with zeros in
        the padding, and a float32 scalar ``image_scale`` = original pixels per
        output pixel, i.e. multiply a box in output pixels by it to get
        original-image pixels (the official ``image_scale``).
    """
    out_h, out_w = parse_image_size(image_size)
    shape = tf.shape(image)
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    scale = tf.minimum(out_h / height, out_w / width)
    # Rounding (not flooring) keeps the limiting side exactly at the output size.
    new_h = tf.clip_by_value(tf.cast(tf.round(height * scale), tf.int32), 1, out_h)
    new_w = tf.clip_by_value(tf.cast(tf.round(width * scale), tf.int32), 1, out_w)
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.stack([new_h, new_w]), method=method)
    if window_fn is not None:
        resized = window_fn(resized)
    padded = tf.image.pad_to_bounding_box(resized, 0, 0, out_h, out_w)
    padded = tf.ensure_shape(padded, [out_h, out_w, image.shape[-1]])
    return padded, 1.0 / scale


def preprocess_detection_image(image: tf.Tensor, image_size: ImageSize,
                               normalization: str = DETECTION_NORMALIZATION):
    """Evaluation/serving preprocessing of EfficientDet: normalise, then :func:`resize_and_pad`.

    Args:
        image: ``[h, w, 3]`` RGB, 0…255 (uint8 or float).
        image_size: network input ``(height, width)``.
        normalization: a name of :data:`NORMALIZATIONS` (the model's ``preprocessing``).

    Returns:
        ``(image, image_scale)``: float32 ``[height, width, 3]`` and the float32
        scalar of :func:`resize_and_pad`.
    """
    # Normalising the resized image equals normalising first (bilinear weights
    # sum to 1) and is cheaper; padding after it keeps the official mean-colour pad.
    return resize_and_pad(image, image_size,
                          window_fn=lambda pixels: normalize_image(pixels, normalization))


def center_crop(image: tf.Tensor, image_size: ImageSize, crop_padding: int = CROP_PADDING,
                method: str = "bilinear") -> tf.Tensor:
    """Evaluation crop of the EfficientNet recipes, then resize to ``image_size``.

    Takes the central window whose size is ``S / (S + crop_padding)`` of the
    shorter side (``S`` = the shorter output side; for square outputs this is
    the official ``image_size / (image_size + 32) * min(h, w)``), keeping the
    output aspect ratio, and resizes it to ``image_size``.

    Args:
        image: ``[h, w, C]``.
        image_size: output ``(height, width)`` or an int.
        crop_padding: the official 32.
        method: ``tf.image.resize`` method.

    Returns:
        float32 ``[height, width, C]`` (values in the input's range).
    """
    out_h, out_w = parse_image_size(image_size)
    shape = tf.shape(image)
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    short = float(min(out_h, out_w))
    fraction = short / (short + crop_padding)
    scale = tf.minimum(height / out_h, width / out_w) * fraction
    crop_h = tf.clip_by_value(tf.cast(tf.round(out_h * scale), tf.int32), 1, shape[0])
    crop_w = tf.clip_by_value(tf.cast(tf.round(out_w * scale), tf.int32), 1, shape[1])
    offset_h = (shape[0] - crop_h + 1) // 2
    offset_w = (shape[1] - crop_w + 1) // 2
    crop = image[offset_h:offset_h + crop_h, offset_w:offset_w + crop_w]
    resized = tf.image.resize(tf.cast(crop, tf.float32), [out_h, out_w], method=method)
    return tf.ensure_shape(resized, [out_h, out_w, image.shape[-1]])


def eval_resize(image: tf.Tensor, image_size: ImageSize, method: str = "scale_128",
                crop=None) -> tf.Tensor:
    """Evaluation geometry of a classifier: :func:`center_crop` or a plain resize.

    Args:
        image: ``[h, w, 3]``, values 0–255.
        image_size: output ``(height, width)`` or an int.
        method: the normalization name (selects the crop rule).
        crop: force the center crop on/off; None = :func:`uses_center_crop`.

    Returns:
        float32 ``[height, width, 3]``, values 0–255.
    """
    if crop is None:
        crop = uses_center_crop(image_size, method)
    if crop:
        return center_crop(image, image_size)
    out_h, out_w = parse_image_size(image_size)
    resized = tf.image.resize(tf.cast(image, tf.float32), [out_h, out_w])
    return tf.ensure_shape(resized, [out_h, out_w, image.shape[-1]])


def preprocess_classification_image(image: tf.Tensor, image_size: ImageSize,
                                    method: str = "scale_128", crop=None) -> tf.Tensor:
    """Evaluation/serving preprocessing of a classifier: :func:`eval_resize`, then normalise.

    Returns:
        float32 ``[height, width, 3]``.
    """
    return normalize_classification_image(eval_resize(image, image_size, method, crop), method)
