"""Shared Keras layers (backend-neutral: Keras layers and ``keras.ops`` only).

Sub-layer names follow the official google/automl variable scopes
(``conv2d``, ``tpu_batch_normalization``, ``depthwise_conv2d``, ``se``), so a
weight's Keras path is the official checkpoint name up to a small, fixed
rename table (see :func:`common.checkpoints.official.official_name`).
"""
from common.layers.activations import get_activation
from common.layers.classification_head import ClassificationHead
from common.layers.conv import ConvBnAct, conv2d, depthwise_conv2d, separable_conv2d
from common.layers.drop_path import DropPath
from common.layers.mbconv import FusedMBConv, MBConv
from common.layers.normalization import batch_norm
from common.layers.squeeze_excite import SqueezeExcite

__all__ = [
    "ClassificationHead",
    "ConvBnAct",
    "DropPath",
    "FusedMBConv",
    "MBConv",
    "SqueezeExcite",
    "batch_norm",
    "conv2d",
    "depthwise_conv2d",
    "get_activation",
    "separable_conv2d",
]
