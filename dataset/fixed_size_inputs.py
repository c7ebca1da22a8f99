"""Pictures of any size → uint8 images of a file's fixed network size (TFLite).

A TFLite file takes uint8 ``[B, h, w, 3]`` at exactly the network size: its
in-graph letterbox / crop is then the identity (detectors) or crops a window of
what it is given (classifiers). To run such a file on a photo, the photo is
fitted here in NumPy so that the file sees what the Keras wrapper would have
made of the photo, up to rounding to uint8 (the families' inference settings
call these as ``fit_pictures``):

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

from dataset.normalizations import NORMALIZATIONS
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


def crop_or_resize_uint8(images, image_size, center_crop):
    """``[B, H, W, 3]`` uint8 → ``[B, h, w, 3]`` uint8 for a classifier file.

    ``center_crop`` (the wrapper's resolved rule): the largest central window with
    the network's aspect ratio (:func:`dataset.numpy_preprocessing.center_crop_numpy`
    with no padding), resized; else a plain bilinear resize.
    """
    return _to_uint8(center_crop_numpy(images, image_size, crop_padding=0) if center_crop
                     else resize_bilinear_numpy(images, image_size))
