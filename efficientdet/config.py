"""Model config of the detection family (EfficientDet D0–D7x) and its presets.

Presets come from the compound-scaling table in :mod:`efficientdet.model_configs`
(Tan, Pang & Le 2020, Table 1); training defaults are the official COCO recipe
(SGD momentum 0.9, lr 0.08 per 64 images, 1 warm-up epoch from 0.008, cosine
decay, weight decay 4e-5, EMA 0.9998, gradient clipping at norm 10).
"""
from __future__ import annotations

import dataclasses

from common.config.errors import ConfigError

TASK = "detection"
_WEIGHT_METHODS = ("fastattn", "attn", "sum", "channel_attn", "channel_fastattn")
_NMS_METHODS = ("gaussian", "hard", "global", "global_hard", "per_class", "per_class_hard", "combined")
_IOU_LOSSES = ("giou", "diou", "ciou", "iou")


@dataclasses.dataclass(frozen=True)
class DetectionLossConfig:
    """Focal loss + Huber box loss (+ optional IoU-family loss) weights."""

    alpha: float = 0.25
    gamma: float = 1.5
    label_smoothing: float = 0.0
    delta: float = 0.1
    box_loss_weight: float = 50.0
    iou_loss_type: str | None = None
    iou_loss_weight: float = 1.0

    def validate(self):
        if self.iou_loss_type is not None and self.iou_loss_type not in _IOU_LOSSES:
            raise ConfigError(
                f"model.loss.iou_loss_type {self.iou_loss_type!r} is not one of {_IOU_LOSSES} or null."
            )


@dataclasses.dataclass(frozen=True)
class NmsConfig:
    """Post-processing (see :mod:`efficientdet.postprocess`): ``gaussian`` (alias
    ``global``) = Gaussian soft-NMS over the best class of each anchor (official
    default); ``hard`` (``global_hard``) = class-agnostic hard NMS; ``per_class``
    = soft-NMS per class (official); ``per_class_hard`` = hard NMS per class;
    ``combined`` = ``tf.image.combined_non_max_suppression``."""

    method: str = "gaussian"
    iou_threshold: float = 0.5
    score_threshold: float = 0.001
    sigma: float = 0.5
    max_output_size: int = 100
    max_nms_inputs: int = 5000

    def validate(self):
        if self.method not in _NMS_METHODS:
            raise ConfigError(f"model.nms.method {self.method!r} is not one of {_NMS_METHODS}.")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ConfigError("model.nms.iou_threshold must be in (0, 1].")
        if self.max_output_size < 1:
            raise ConfigError("model.nms.max_output_size must be >= 1.")


@dataclasses.dataclass(frozen=True)
class DetectionModelConfig:
    """An EfficientDet. ``image_size`` is (height, width), multiples of 2**max_level."""

    name: str = "efficientdet-d0"
    num_classes: int = 90
    image_size: tuple[int, int] = (512, 512)
    backbone_name: str = "efficientnet-b0"
    fpn_num_filters: int = 64
    fpn_cell_repeats: int = 3
    box_class_repeats: int = 3
    fpn_weight_method: str = "fastattn"
    separable_conv: bool = True
    min_level: int = 3
    max_level: int = 7
    num_scales: int = 3
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5)
    anchor_scale: float = 4.0
    activation: str = "swish"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    fpn_name: str = "bifpn"
    apply_bn_for_resampling: bool = True
    conv_after_downsample: bool = False
    conv_bn_act_pattern: bool = False
    backbone_drop_path_rate: float = 0.0
    head_drop_path_rate: float = 0.0
    loss: DetectionLossConfig = DetectionLossConfig()
    nms: NmsConfig = NmsConfig()

    @property
    def num_anchors(self):
        return self.num_scales * len(self.aspect_ratios)

    def validate(self):
        if self.num_classes < 1:
            raise ConfigError(f"model.num_classes must be >= 1, got {self.num_classes}.")
        if not 2 <= self.min_level < self.max_level:
            raise ConfigError(
                f"model.min_level/max_level must satisfy 2 <= min < max, got "
                f"{self.min_level}, {self.max_level}."
            )
        stride = 2 ** self.max_level
        height, width = self.image_size
        if height % stride or width % stride or height <= 0 or width <= 0:
            raise ConfigError(
                f"model.image_size {height}x{width} must be positive multiples of "
                f"{stride} (2**max_level); e.g. {max(stride, round(height / stride) * stride)}x"
                f"{max(stride, round(width / stride) * stride)}."
            )
        if self.fpn_weight_method not in _WEIGHT_METHODS:
            raise ConfigError(
                f"model.fpn_weight_method {self.fpn_weight_method!r} is not one of {_WEIGHT_METHODS}."
            )
        if self.num_scales < 1 or not self.aspect_ratios:
            raise ConfigError("model.num_scales must be >= 1 and model.aspect_ratios non-empty.")


MODEL_CONFIG_CLASS = DetectionModelConfig


def list_model_names():
    """``efficientdet-d0`` … ``efficientdet-d7x``."""
    from efficientdet.model_configs import list_detector_names

    return list_detector_names()


def presets(model_name):
    """Nested config overrides for ``model_name`` from the compound-scaling table."""
    from efficientdet.model_configs import get_detector_params

    params = get_detector_params(model_name)
    fields = {f.name for f in dataclasses.fields(DetectionModelConfig)}
    model = {k: v for k, v in params.items() if k in fields and k != "name"}
    return {"model": model}


def build_network(model_config, sync_bn=False):
    """The pure detector network of ``model_config`` (see :mod:`efficientdet.builder`)."""
    from efficientdet.builder import build_detector_from_config

    return build_detector_from_config(model_config, sync_bn=sync_bn)


def make_experiment(config, distribution):
    """The detection experiment (data, task, evaluation) of ``config``."""
    from efficientdet.experiment import DetectionExperiment

    return DetectionExperiment(config, distribution)
