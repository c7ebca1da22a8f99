"""Batch-level MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) on one-hot labels.

Each image is mixed with its partner in the reversed batch, with its own
``lambda ~ Beta(alpha, alpha)``; labels are mixed with the same weights
(for CutMix, the exact fraction of pixels kept), so every label row still sums
to 1. With both alphas set, each batch uses one of the two, chosen with
probability 0.5. Randomness is stateless on an explicit seed.
"""
from __future__ import annotations

import tensorflow as tf


def _beta(shape, alpha, seed):
    seeds = tf.random.experimental.stateless_split(seed, 2)
    a = tf.random.stateless_gamma(shape, seeds[0], alpha)
    b = tf.random.stateless_gamma(shape, seeds[1], alpha)
    return a / tf.maximum(a + b, 1e-12)


def mixup(images: tf.Tensor, labels: tf.Tensor, alpha: float, seed: tf.Tensor):
    """MixUp.

    Args:
        images: float ``[B, H, W, C]``.
        labels: float ``[B, K]`` one-hot (or smoothed) labels.
        alpha: Beta distribution parameter (> 0).
        seed: int ``[2]``.

    Returns:
        ``(images, labels)`` with the same shapes.
    """
    lam = _beta([tf.shape(images)[0]], alpha, seed)
    images_lam = tf.cast(lam[:, None, None, None], images.dtype)
    mixed = images_lam * images + (1.0 - images_lam) * tf.reverse(images, [0])
    mixed_labels = lam[:, None] * labels + (1.0 - lam[:, None]) * tf.reverse(labels, [0])
    return mixed, mixed_labels


def cutmix(images: tf.Tensor, labels: tf.Tensor, alpha: float, seed: tf.Tensor):
    """CutMix: paste a random box of the partner image; arguments as :func:`mixup`."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    batch = tf.shape(images)[0]
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    lam = _beta([batch], alpha, seeds[0])
    cut = tf.sqrt(1.0 - lam)
    centre = tf.random.stateless_uniform([batch, 2], seeds[1]) * tf.stack([h, w])
    y0 = tf.clip_by_value(tf.round(centre[:, 0] - cut * h / 2), 0.0, h)
    y1 = tf.clip_by_value(tf.round(centre[:, 0] + cut * h / 2), 0.0, h)
    x0 = tf.clip_by_value(tf.round(centre[:, 1] - cut * w / 2), 0.0, w)
    x1 = tf.clip_by_value(tf.round(centre[:, 1] + cut * w / 2), 0.0, w)
    rows = tf.range(h)[None, :, None]
    cols = tf.range(w)[None, None, :]
    inside = ((rows >= y0[:, None, None]) & (rows < y1[:, None, None])
              & (cols >= x0[:, None, None]) & (cols < x1[:, None, None]))
    mixed = tf.where(inside[..., None], tf.reverse(images, [0]), images)
    kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    mixed_labels = kept[:, None] * labels + (1.0 - kept[:, None]) * tf.reverse(labels, [0])
    return mixed, mixed_labels


def mix_batch(images, labels, mixup_alpha: float, cutmix_alpha: float, seed):
    """MixUp and/or CutMix of a batch as configured (module docstring)."""
    if mixup_alpha > 0 and cutmix_alpha > 0:
        seeds = tf.random.experimental.stateless_split(seed, 2)
        use_mixup = tf.random.stateless_uniform([], seeds[0]) < 0.5
        return tf.cond(use_mixup, lambda: mixup(images, labels, mixup_alpha, seeds[1]),
                       lambda: cutmix(images, labels, cutmix_alpha, seeds[1]))
    if mixup_alpha > 0:
        return mixup(images, labels, mixup_alpha, seed)
    if cutmix_alpha > 0:
        return cutmix(images, labels, cutmix_alpha, seed)
    return images, labels
