"""Pixel normalisations of the official checkpoints, ``(x - mean) / std`` in 0…255
units, by name (plain data: config validation reads it without TensorFlow).

* ``imagenet_mean_std``: the ImageNet mean and standard deviation (EfficientDet
  D0–D7x, EfficientNet V1 B0–B7);
* ``scale_128``: ``(x - 128) / 128`` (EfficientNetV2);
* ``scale_127``: ``(x - 127) / 128`` (EfficientDet-Lite, EfficientNet-Lite).
"""
MEAN_RGB = (123.675, 116.28, 103.53)
STDDEV_RGB = (58.395, 57.12, 57.375)
# name: (mean, stddev) per RGB channel.
NORMALIZATIONS = {
    "imagenet_mean_std": (MEAN_RGB, STDDEV_RGB),
    "scale_128": ((128.0,) * 3, (128.0,) * 3),
    "scale_127": ((127.0,) * 3, (128.0,) * 3),
}
