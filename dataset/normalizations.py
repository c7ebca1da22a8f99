"""Pixel normalisations of the official checkpoints, ``(x - mean) / std`` in 0…255
units, by name, and the evaluation crop rule of the classifiers (plain data:
config validation and the NumPy pre-processing read it without TensorFlow).

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
CLASSIFICATION_METHODS = tuple(NORMALIZATIONS)
DETECTION_NORMALIZATION = "imagenet_mean_std"
CROP_PADDING = 32
NO_CROP_FROM = 320  # official V2 evaluation: plain resize, no center crop, from this size up


def uses_center_crop(image_size, method: str = "scale_128") -> bool:
    """The official evaluation crop rule: EfficientNetV2 (``scale_128``) crops
    only below :data:`NO_CROP_FROM` pixels and plainly resizes from there up;
    the EfficientNet V1 and Lite recipes (``imagenet_mean_std``, ``scale_127``)
    always crop. ``image_size``: an int or ``(height, width)``."""
    from common.detection.image_size import parse_image_size

    return method != "scale_128" or min(parse_image_size(image_size)) < NO_CROP_FROM
