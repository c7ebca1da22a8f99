"""EfficientNet(V2) inference: uint8 images → center crop → resize → normalize → logits.

The evaluation preprocessing of the official EfficientNetV2 code (Tan & Le
2021, §5.1) as a wrapper around the pure classifier (DESIGN.md: networks are
never subclassed):

1. **center crop** (when enabled): the central region with the network's
   aspect ratio and ``min(h, w) / (min(h, w) + 32)`` of the largest such
   region — for a square network size ``n`` that is a square of side
   ``n / (n + 32) · min(H, W)``, truncated to whole pixels. The official V2
   evaluation crops only below 320 pixels; the EfficientNet V1 evaluation
   (``imagenet_mean_std``) always crops, with bicubic resizing;
2. **resize** to the network size (not aspect-preserving; the crop already has
   the right aspect);
3. **normalize**: ``scale_128`` = ``(x - 128) / 128`` (V2) or
   ``imagenet_mean_std`` = ``(x - mean) / std`` in 0–255 RGB units (V1).

Outputs: ``logits [B, C]`` and ``probabilities [B, C]`` (softmax) float32,
``top_k_classes [B, k]`` int32 (0-based class ids, best first) and
``top_k_probabilities [B, k]``.
"""
from __future__ import annotations

import tensorflow as tf

from common.export.module import InferenceModule

IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STDDEV_RGB = (58.395, 57.12, 57.375)
CROP_PADDING = 32
_NORMALIZATIONS = ("scale_128", "imagenet_mean_std")


def center_crop_box(height, width, target_size, crop_padding=CROP_PADDING):
    """Offset and size of the official evaluation center crop.

    Args:
        height, width: image size (int32 scalars or ints).
        target_size: network ``(height, width)``.
        crop_padding: the ``+ 32`` of ``n / (n + 32)``.

    Returns:
        int32 ``(offset_y, offset_x, crop_height, crop_width)``.
    """
    target_h, target_w = float(target_size[0]), float(target_size[1])
    fraction = min(target_h, target_w) / (min(target_h, target_w) + crop_padding)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    fit = tf.minimum(h / target_h, w / target_w)  # largest region with the network's aspect
    crop_h = tf.maximum(tf.cast(fraction * fit * target_h, tf.int32), 1)
    crop_w = tf.maximum(tf.cast(fraction * fit * target_w, tf.int32), 1)
    offset_y = (tf.cast(height, tf.int32) - crop_h) // 2
    offset_x = (tf.cast(width, tf.int32) - crop_w) // 2
    return offset_y, offset_x, crop_h, crop_w


def classification_preprocess(images, target_size, normalization="scale_128", center_crop=None):
    """Official eval preprocessing of ``[B, H, W, 3]`` or ``[H, W, 3]`` images (0–255).

    Args:
        images: RGB images of one size, any real dtype.
        target_size: network ``(height, width)``.
        normalization: ``scale_128`` or ``imagenet_mean_std``.
        center_crop: crop first; None = the official rule for ``normalization``.

    Returns:
        float32 ``[B, h, w, 3]`` (or ``[h, w, 3]``).
    """
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization {normalization!r} must be one of {_NORMALIZATIONS} "
                         "(model.preprocessing in the config).")
    legacy = normalization == "imagenet_mean_std"
    if center_crop is None:
        center_crop = legacy or min(target_size) < 320
    images = tf.cast(images, tf.float32)
    if center_crop:
        shape = tf.shape(images)
        offset_y, offset_x, crop_h, crop_w = center_crop_box(shape[-3], shape[-2], target_size)
        images = tf.image.crop_to_bounding_box(images, offset_y, offset_x, crop_h, crop_w)
    images = tf.image.resize(images, target_size, method="bicubic" if legacy else "bilinear")
    if legacy:
        return (images - tf.constant(IMAGENET_MEAN_RGB)) / tf.constant(IMAGENET_STDDEV_RGB)
    return (images - 128.0) / 128.0


class ClassifierInference(InferenceModule):
    """EfficientNet(V2) classifier + crop / resize / normalization + softmax / top-k.

    Args:
        network: a pure classifier (:func:`efficientnet_v2.network.build_classifier`).
        image_size: network input ``(height, width)``.
        normalization: ``scale_128`` or ``imagenet_mean_std``.
        center_crop: None = the official rule (module docstring).
        top_k: classes reported per image (capped at the number of classes).
    """

    task = "classification"

    def __init__(self, network, image_size, normalization="scale_128", center_crop=None, top_k=5,
                 name="classifier_inference"):
        super().__init__(network, image_size, name=name)
        if normalization not in _NORMALIZATIONS:
            raise ValueError(f"normalization {normalization!r} must be one of {_NORMALIZATIONS}.")
        self.normalization = normalization
        self.center_crop = center_crop
        self.num_classes = int(network.outputs[0].shape[-1])
        self.top_k = max(1, min(int(top_k), self.num_classes))

    @classmethod
    def from_config(cls, network, model_config, top_k=5):
        """Builds the wrapper from a ``ClassificationModelConfig``."""
        return cls(network, model_config.image_size, normalization=model_config.preprocessing,
                   top_k=top_k)

    def _preprocess(self, images):
        return classification_preprocess(images, self.image_size, self.normalization,
                                         self.center_crop)

    def preprocess_batch(self, images):
        normalized = tf.ensure_shape(self._preprocess(images), [None, *self.image_size, 3])
        return normalized, tf.ones(tf.shape(images)[:1], tf.float32)

    def preprocess_single(self, image):
        return self._preprocess(image), tf.constant(1.0)

    def raw_outputs(self, normalized):
        """Normalized ``[B, h, w, 3]`` → ``{"logits": [B, C]}`` float32."""
        return {"logits": tf.cast(self.network(normalized, training=False), tf.float32)}

    def postprocess(self, raw, side_info):
        del side_info  # classification needs no geometry
        logits = raw["logits"]
        probabilities = tf.nn.softmax(logits, axis=-1)
        top_probabilities, top_classes = tf.math.top_k(probabilities, k=self.top_k)
        return {
            "logits": logits,
            "probabilities": probabilities,
            "top_k_classes": top_classes,
            "top_k_probabilities": top_probabilities,
        }
