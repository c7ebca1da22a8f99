"""EfficientNet(V2) inference: uint8 images → center crop → resize → normalize → logits.

The evaluation preprocessing of the official EfficientNetV2 code (Tan & Le
2021, §5.1) as a wrapper around the pure classifier (networks are never
subclassed; ARCHITECTURE.md), built from the shared functions of
:mod:`dataset.preprocessing`:

1. **center crop + resize** (:func:`dataset.preprocessing.eval_resize`): the
   central window of ``n / (n + 32)`` of the shorter side (``n`` = the
   network's shorter side), with the network's aspect ratio, resized to the
   network size. The official V2 evaluation crops only below 320 pixels and
   simply resizes from 320 up; the EfficientNet V1 recipe
   (``imagenet_mean_std``) always crops;
2. **normalize** (:func:`dataset.preprocessing.normalize_classification_image`):
   ``scale_128`` = ``(x - 128) / 128`` (V2), ``imagenet_mean_std`` (V1) or
   ``scale_127`` = ``(x - 127) / 128`` (Lite).

Outputs: ``logits [B, C]`` and ``probabilities [B, C]`` (softmax) float32,
``top_k_classes [B, k]`` int32 (0-based class ids, best first) and
``top_k_probabilities [B, k]``.
"""
from __future__ import annotations

import tensorflow as tf

from common.export.module import InferenceModule, fold_batch, unfold_batch
from efficientnet_v2.inference_settings import ClassifierSettings
from dataset.preprocessing import (
    CLASSIFICATION_METHODS,
    eval_resize,
    normalize_classification_image,
    uses_center_crop,
)


def classification_preprocess(images, image_size, normalization="scale_128", crop=None):
    """Official eval preprocessing of ``[H, W, 3]`` or same-size ``[B, H, W, 3]`` images.

    Args:
        images: RGB, values 0–255, any real dtype.
        image_size: network ``(height, width)``.
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
    images = tf.convert_to_tensor(images)
    batched = images.shape.rank == 4
    pixels = fold_batch(images) if batched else images
    pixels = eval_resize(pixels, image_size, normalization, crop)
    if batched:
        pixels = unfold_batch(pixels, tf.shape(images)[0])
    return normalize_classification_image(pixels, normalization)


class ClassifierInference(ClassifierSettings, InferenceModule):
    """EfficientNet(V2) classifier + crop / resize / normalization + softmax / top-k.

    Args:
        network: a pure classifier (:func:`efficientnet_v2.network.build_classifier`).
        image_size: network input ``(height, width)``.
        normalization: ``scale_128``, ``imagenet_mean_std`` or ``scale_127``.
        center_crop: None = the official rule (module docstring).
        top_k: classes reported per image (capped at the number of classes).
    """

    def __init__(self, network, image_size, normalization="scale_128", center_crop=None, top_k=5,
                 name="classifier_inference"):
        super().__init__(network, image_size, name=name)
        self._configure(network, normalization, center_crop, top_k)

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

    def postprocess(self, raw, side_info, unroll=False):
        del side_info, unroll  # no geometry, no loops
        logits = raw["logits"]
        probabilities = tf.nn.softmax(logits, axis=-1)
        top_probabilities, top_classes = tf.math.top_k(probabilities, k=self.top_k)
        return {
            "logits": logits,
            "probabilities": probabilities,
            "top_k_classes": top_classes,
            "top_k_probabilities": top_probabilities,
        }
