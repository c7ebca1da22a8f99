"""NumPy twin of the inference pre-processing, for non-TensorFlow Keras backends.

:func:`letterbox_numpy` and :func:`classification_preprocess_numpy` give the
pixels of :func:`efficientdet.inference.letterbox` and
:func:`efficientnet_v2.inference.classification_preprocess` (built on
:mod:`dataset.preprocessing`) without importing TensorFlow, so a JAX (or any
other backend) model can be fed the images evaluation and export see.
``tests/dataset/test_numpy_preprocessing.py`` compares both pairs on random
images and holds them together: change one side only with the other.

The arithmetic follows TensorFlow step by step in float32:

* letterbox scale ``s = min(h / H, w / W)`` in float32, resized size
  ``round(H * s)`` with round-half-to-even (``tf.round``) clipped to
  ``1 … h``, scale back to the original ``1 / s``;
* bilinear resize as ``tf.image.resize(method="bilinear", antialias=False)``
  (TF2 ``ResizeBilinear`` with half-pixel centres): source coordinate
  ``(i + 0.5) * in / out - 0.5``, neighbours ``max(floor, 0)`` and
  ``min(ceil, in - 1)``, weight ``coordinate - floor``, horizontal lerp of the
  top and bottom rows, then vertical lerp;
* normalisation ``(x - mean) / std`` after the resize, then (detection) zero
  padding bottom/right, so padded pixels equal the mean colour.

Imports NumPy, the standard library and TensorFlow-free project modules only;
the constants and the crop rule are :mod:`dataset.normalizations`', shared
with :mod:`dataset.preprocessing`.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from common.detection.image_size import ImageSize, parse_image_size
from dataset.normalizations import (  # noqa: F401  (re-exported)
    CLASSIFICATION_METHODS,
    CROP_PADDING,
    DETECTION_NORMALIZATION,
    NO_CROP_FROM,
    NORMALIZATIONS,
    uses_center_crop,
)


def _as_images(images) -> Tuple[np.ndarray, bool]:
    """Returns ``(images, batched)`` with ``images`` as an ndarray of rank 3 or 4."""
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be [H, W, C] or [B, H, W, C], got shape {images.shape}.")
    if images.shape[-3] < 1 or images.shape[-2] < 1:
        raise ValueError(f"images must not be empty, got shape {images.shape}.")
    return images, images.ndim == 4


def _mean_std(method: str) -> Tuple[np.ndarray, np.ndarray]:
    if method not in NORMALIZATIONS:
        raise ValueError(f"preprocessing method {method!r} is not one of {tuple(NORMALIZATIONS)}.")
    mean, stddev = NORMALIZATIONS[method]
    return np.asarray(mean, np.float32), np.asarray(stddev, np.float32)


def normalize_image_numpy(image: np.ndarray, method: str = DETECTION_NORMALIZATION) -> np.ndarray:
    """``(image - mean) / std`` of normalisation ``method`` in float32.

    Args:
        image: ``[..., 3]`` RGB in 0…255 (any real dtype).
        method: a name of :data:`dataset.normalizations.NORMALIZATIONS`.

    Returns:
        float32 array of the same shape (twin of
        :func:`dataset.preprocessing.normalize_image`).
    """
    mean, stddev = _mean_std(method)
    image = np.asarray(image, np.float32)
    return (image - mean) / stddev


def _interpolation(out_size: int, in_size: int):
    """Neighbour indices and weights of TF's half-pixel bilinear resize along one axis.

    Returns:
        ``(lower, upper, lerp)``: int ``[out_size]``, int ``[out_size]`` and
        float32 ``[out_size]``.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    coord = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(coord)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(coord).astype(np.int64), in_size - 1)
    lerp = (coord - floor).astype(np.float32)
    return lower, upper, lerp


def resize_bilinear_numpy(images: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``tf.image.resize(images, size, "bilinear", antialias=False)`` in NumPy.

    Args:
        images: ``[..., H, W, C]`` (any real dtype; interpolated in float32).
        size: output ``(height, width)``.

    Returns:
        float32 ``[..., height, width, C]``.
    """
    images = np.asarray(images)
    out_h, out_w = int(size[0]), int(size[1])
    in_h, in_w = images.shape[-3], images.shape[-2]
    if (out_h, out_w) == (in_h, in_w):
        # Half-pixel centres at the same size: every weight is 0, the identity.
        return images.astype(np.float32)
    y_lower, y_upper, y_lerp = _interpolation(out_h, in_h)
    x_lower, x_upper, x_lerp = _interpolation(out_w, in_w)
    # Gather in the input dtype (cheaper than casting the full image), cast after.
    top_rows = np.take(images, y_lower, axis=-3)
    bottom_rows = np.take(images, y_upper, axis=-3)
    f32 = np.float32
    top_left = np.take(top_rows, x_lower, axis=-2).astype(f32)
    top_right = np.take(top_rows, x_upper, axis=-2).astype(f32)
    bottom_left = np.take(bottom_rows, x_lower, axis=-2).astype(f32)
    bottom_right = np.take(bottom_rows, x_upper, axis=-2).astype(f32)
    x_lerp = x_lerp[:, None]        # [w, 1]
    y_lerp = y_lerp[:, None, None]  # [h, 1, 1]
    top = top_left + (top_right - top_left) * x_lerp
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    return top + (bottom - top) * y_lerp


def letterbox_numpy(images, image_size: ImageSize,
                    normalization: str = DETECTION_NORMALIZATION) -> Tuple[np.ndarray, np.float32]:
    """Official EfficientDet eval preprocessing of one image or a batch of one size.

    Twin of :func:`efficientdet.inference.letterbox`: resize keeping the aspect
    ratio so the image fits ``image_size`` (bilinear), normalise, pad
    bottom/right with zeros (= the mean colour).

    Args:
        images: ``[H, W, 3]`` or ``[B, H, W, 3]`` RGB, values 0–255 (any real dtype).
        image_size: network ``(height, width)`` or an int.
        normalization: a name of :data:`dataset.normalizations.NORMALIZATIONS`.

    Returns:
        ``(normalized, scale_to_original)``: float32 ``[h, w, 3]`` (or
        ``[B, h, w, 3]``) and the float32 scalar ``1 / s`` mapping network
        pixels back to image pixels.
    """
    out_h, out_w = parse_image_size(image_size)
    _mean_std(normalization)  # validate before any work
    images, _ = _as_images(images)
    new_h, new_w, scale_to_original = letterbox_geometry(images.shape[-3], images.shape[-2],
                                                         (out_h, out_w))
    resized = normalize_image_numpy(resize_bilinear_numpy(images, (new_h, new_w)), normalization)
    padded = np.zeros(images.shape[:-3] + (out_h, out_w, images.shape[-1]), np.float32)
    padded[..., :new_h, :new_w, :] = resized
    return padded, scale_to_original


def letterbox_geometry(height: int, width: int, image_size: Tuple[int, int]):
    """``(new_h, new_w, scale_to_original)`` of the letterbox of a ``height × width``
    picture into ``image_size``: float32 arithmetic as TensorFlow's (module docstring)."""
    out_h, out_w = image_size
    height, width = np.float32(height), np.float32(width)
    scale = np.minimum(np.float32(out_h) / height, np.float32(out_w) / width)
    # np.round rounds half to even, as tf.round.
    new_h = int(np.clip(np.round(height * scale), 1, out_h))
    new_w = int(np.clip(np.round(width * scale), 1, out_w))
    return new_h, new_w, np.float32(np.float32(1.0) / scale)


def center_crop_numpy(images, image_size: ImageSize, crop_padding: int = CROP_PADDING) -> np.ndarray:
    """Evaluation crop of the EfficientNet recipes, then bilinear resize.

    Twin of :func:`dataset.preprocessing.center_crop`: the central window of
    ``S / (S + crop_padding)`` of the shorter side (``S`` = the shorter output
    side) with the output aspect ratio, resized to ``image_size``.

    Args:
        images: ``[H, W, C]`` or ``[B, H, W, C]``.
        image_size: output ``(height, width)`` or an int.
        crop_padding: the official 32.

    Returns:
        float32 ``[height, width, C]`` (or ``[B, height, width, C]``), values in
        the input's range.
    """
    out_h, out_w = parse_image_size(image_size)
    images, _ = _as_images(images)
    in_h, in_w = images.shape[-3], images.shape[-2]
    short = float(min(out_h, out_w))
    fraction = np.float32(short / (short + crop_padding))  # Python double → float32, as TF
    scale = np.minimum(np.float32(in_h) / np.float32(out_h),
                       np.float32(in_w) / np.float32(out_w)) * fraction
    crop_h = int(np.clip(np.round(np.float32(out_h) * scale), 1, in_h))
    crop_w = int(np.clip(np.round(np.float32(out_w) * scale), 1, in_w))
    offset_h = (in_h - crop_h + 1) // 2
    offset_w = (in_w - crop_w + 1) // 2
    crop = images[..., offset_h:offset_h + crop_h, offset_w:offset_w + crop_w, :]
    return resize_bilinear_numpy(crop, (out_h, out_w))


def classification_preprocess_numpy(images, image_size: ImageSize, normalization: str = "scale_128",
                                    crop: Optional[bool] = None) -> np.ndarray:
    """Official classifier eval preprocessing of ``[H, W, 3]`` or same-size ``[B, H, W, 3]`` images.

    Twin of :func:`efficientnet_v2.inference.classification_preprocess`:
    :func:`center_crop_numpy` or a plain bilinear resize, then normalisation.

    Args:
        images: RGB, values 0–255, any real dtype.
        image_size: network ``(height, width)`` or an int.
        normalization: ``scale_128``, ``imagenet_mean_std`` or ``scale_127``.
        crop: center-crop first; None = :func:`uses_center_crop`.

    Returns:
        float32 ``[h, w, 3]`` (or ``[B, h, w, 3]``).
    """
    if normalization not in CLASSIFICATION_METHODS:
        raise ValueError(f"normalization {normalization!r} must be one of "
                         f"{CLASSIFICATION_METHODS} (model.preprocessing in the config).")
    if crop is None:
        crop = uses_center_crop(image_size, normalization)
    images, _ = _as_images(images)
    if crop:
        pixels = center_crop_numpy(images, image_size)
    else:
        pixels = resize_bilinear_numpy(images, parse_image_size(image_size))
    return normalize_image_numpy(pixels, normalization)
