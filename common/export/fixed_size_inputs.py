"""Pictures of any size → uint8 images of a file's fixed network size (TFLite).

A TFLite file takes uint8 ``[B, h, w, 3]`` at exactly the network size: its
in-graph letterbox / crop is then the identity (detectors) or crops a window of
what it is given (classifiers). To run such a file on a photo, the photo is
fitted here in NumPy so that the file sees what the Keras wrapper would have
made of the photo, up to rounding to uint8:

* **detection**: the letterbox of :func:`dataset.numpy_preprocessing.letterbox_numpy`
  (aspect kept, bilinear, padded bottom/right) with the padding in the
  normalization's mean colour (which normalizes to ~0, the wrapper's padding),
  and the scale that maps the file's boxes (network pixels) back to the photo's;
* **classification** with the center-crop rule on: the largest central window
  with the network's aspect ratio, resized to the network size; the file's own
  crop then takes the central ``n / (n + 32)`` of it, the window the wrapper
  crops from the photo. With the rule off: a plain resize, as the wrapper does.
"""
from __future__ import annotations

import numpy as np

from dataset.normalizations import NORMALIZATIONS, uses_center_crop
from dataset.numpy_preprocessing import (
    center_crop_numpy,
    letterbox_geometry,
    resize_bilinear_numpy,
)


def _to_uint8(pixels):
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def letterbox_uint8(images, image_size, normalization):
    """``[B, H, W, 3]`` uint8 → (``[B, h, w, 3]`` uint8 letterboxed, float32 scale to original).

    The size, scale and resize of :func:`dataset.numpy_preprocessing.letterbox_numpy`.
    """
    new_h, new_w, scale_to_original = letterbox_geometry(images.shape[1], images.shape[2],
                                                         image_size)
    mean = np.asarray(NORMALIZATIONS[normalization][0], np.float32)
    fitted = np.empty((images.shape[0], *image_size, 3), np.uint8)
    fitted[:] = _to_uint8(mean)
    fitted[:, :new_h, :new_w] = _to_uint8(resize_bilinear_numpy(images, (new_h, new_w)))
    return fitted, scale_to_original


def fit_images(images, image_size, wrapper):
    """Fits a batch of one picture size to the file's network size.

    Args:
        images: uint8 ``[B, H, W, 3]``.
        image_size: the file's ``(h, w)``.
        wrapper: the inference wrapper of the file's config (its ``task``,
            ``normalization`` and, for classifiers, ``center_crop``).

    Returns:
        ``(fitted, scales)``: uint8 ``[B, h, w, 3]`` and float32 ``[B]`` factors
        from network pixels to the pictures' (1 for classifiers).
    """
    images = np.asarray(images, np.uint8)
    batch = images.shape[0]
    if wrapper.task == "detection":
        fitted, scale = letterbox_uint8(images, image_size, wrapper.normalization)
        return fitted, np.full([batch], scale, np.float32)
    crop = wrapper.center_crop
    if crop is None:
        crop = uses_center_crop(image_size, wrapper.normalization)
    # crop_padding 0: the largest central window with the network's aspect ratio.
    fitted = _to_uint8(center_crop_numpy(images, image_size, crop_padding=0) if crop
                       else resize_bilinear_numpy(images, image_size))
    return fitted, np.ones([batch], np.float32)
