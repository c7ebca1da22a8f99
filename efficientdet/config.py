"""Model config of the detection family (EfficientDet D0–D7x, Lite0–4) and its presets.

Presets come from the compound-scaling table in :mod:`efficientdet.model_configs`
(Tan, Pang & Le 2020, Table 1), which also holds the architecture defaults of
:class:`DetectionModelConfig` (D0's entry); training defaults are the official COCO recipe
(SGD momentum 0.9, lr 0.08 per 64 images, 1 warm-up epoch from 0.008, cosine
decay, weight decay 4e-5, EMA 0.9998, gradient clipping at norm 10).
"""
from __future__ import annotations

import dataclasses

from common.config.errors import ConfigError
from common.detection.nms import NMS_METHODS
from common.detection.image_size import parse_image_size
from efficientdet.model_configs import (
    BACKBONE_MAX_LEVEL,
    DEFAULT_DETECTOR,
    FPN_NAMES,
    FPN_WEIGHT_METHODS,
    get_detector_params,
    list_detector_names,
)

TASK = "detection"
_NMS_METHODS = NMS_METHODS  # names and aliases are owned by common.detection.nms
_IOU_LOSSES = ("giou", "diou", "ciou", "iou")
# Every architecture default is D0's entry of the table (one source of truth).
_D0 = get_detector_params(DEFAULT_DETECTOR)


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
    """Post-processing (see :mod:`common.detection.postprocess`): ``gaussian`` (alias
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
    """An EfficientDet. ``image_size`` is (height, width), multiples of 2**min_level.

    Build one for a named detector with :func:`preset_config` (or
    ``load_config``). The architecture defaults are D0's entry of
    :mod:`efficientdet.model_configs`.
    """

    name: str = DEFAULT_DETECTOR
    num_classes: int = 90
    image_size: tuple[int, int] = _D0["image_size"]
    backbone_name: str = _D0["backbone_name"]
    fpn_num_filters: int = _D0["fpn_num_filters"]
    fpn_cell_repeats: int = _D0["fpn_cell_repeats"]
    box_class_repeats: int = _D0["box_class_repeats"]
    fpn_weight_method: str = _D0["fpn_weight_method"]
    separable_conv: bool = _D0["separable_conv"]
    min_level: int = _D0["min_level"]
    max_level: int = _D0["max_level"]
    num_scales: int = _D0["num_scales"]
    aspect_ratios: tuple[float, ...] = _D0["aspect_ratios"]
    anchor_scale: float = _D0["anchor_scale"]
    activation: str = _D0["activation"]
    preprocessing: str = _D0["preprocessing"]
    bn_momentum: float = _D0["bn_momentum"]
    bn_epsilon: float = _D0["bn_epsilon"]
    fpn_name: str = _D0["fpn_name"]
    apply_bn_for_resampling: bool = _D0["apply_bn_for_resampling"]
    conv_after_downsample: bool = _D0["conv_after_downsample"]
    conv_bn_act_pattern: bool = _D0["conv_bn_act_pattern"]
    backbone_drop_path_rate: float = _D0["backbone_drop_path_rate"]
    head_drop_path_rate: float = _D0["head_drop_path_rate"]
    loss: DetectionLossConfig = DetectionLossConfig()
    nms: NmsConfig = NmsConfig()

    @property
    def num_anchors(self):
        return self.num_scales * len(self.aspect_ratios)

    def validate(self, require_exact_strides=True):
        """Checks every model field; the one place detector settings are checked.

        Args:
            require_exact_strides: demand image sides that are multiples of
                ``2**min_level`` (the finest level's stride) for training and
                export. Coarser levels round up (``H_l = ceil(H / 2^l)``; e.g.
                Lite0's 320 gives P7 3x3), with anchors and BiFPN resampling as
                the official code; the bare network accepts any size.

        Raises:
            ConfigError: naming the field and the allowed values.
        """
        if self.num_classes < 1:
            raise ConfigError(f"model.num_classes must be >= 1, got {self.num_classes}.")
        # BiFPN needs two levels or more; the lowest must be a backbone endpoint.
        if not (1 <= self.min_level <= BACKBONE_MAX_LEVEL and self.max_level > self.min_level):
            raise ConfigError(
                f"model.min_level/max_level must satisfy 1 <= min_level <= {BACKBONE_MAX_LEVEL} "
                f"and max_level > min_level, got {self.min_level}, {self.max_level}."
            )
        stride = 2 ** self.min_level
        height, width = self.image_size
        if height <= 0 or width <= 0 or (require_exact_strides and (height % stride or width % stride)):
            raise ConfigError(
                f"model.image_size {height}x{width} must be positive multiples of "
                f"{stride} (2**min_level); e.g. {max(stride, round(height / stride) * stride)}x"
                f"{max(stride, round(width / stride) * stride)}."
            )
        if self.fpn_weight_method not in FPN_WEIGHT_METHODS:
            raise ConfigError(
                f"model.fpn_weight_method {self.fpn_weight_method!r} is not one of {FPN_WEIGHT_METHODS}."
            )
        if self.fpn_name not in FPN_NAMES:
            raise ConfigError(f"model.fpn_name {self.fpn_name!r} is not one of {FPN_NAMES}.")
        from dataset.normalizations import NORMALIZATIONS

        if self.preprocessing not in NORMALIZATIONS:
            raise ConfigError(f"model.preprocessing {self.preprocessing!r} is not one of "
                              f"{tuple(NORMALIZATIONS)}.")
        if self.num_scales < 1 or not self.aspect_ratios:
            raise ConfigError("model.num_scales must be >= 1 and model.aspect_ratios non-empty.")


MODEL_CONFIG_CLASS = DetectionModelConfig


def list_model_names():
    """``efficientdet-d0`` … ``efficientdet-d7x``, ``efficientdet-lite0`` … ``lite4``."""
    return list_detector_names()


def presets(model_name):
    """Nested config overrides for ``model_name`` from the compound-scaling table."""
    params = get_detector_params(model_name)
    del params["name"]  # load_config sets the name itself
    return {"model": params}


def preset_config(name, image_size=None, require_exact_strides=True, **overrides):
    """The validated ``DetectionModelConfig`` of detector ``name``.

    Args:
        name: a name from :func:`list_model_names`.
        image_size: ``int`` (square) or ``(height, width)``; default: the
            detector's own.
        require_exact_strides: demand image sides that are multiples of
            ``2**min_level`` (see :meth:`DetectionModelConfig.validate`).
        **overrides: other fields, e.g. ``num_classes=20``,
            ``fpn_weight_method="sum"``, ``max_level=8``.

    Returns:
        A frozen, validated :class:`DetectionModelConfig`.

    Raises:
        ValueError: for an unknown name, a bad image size; ``ConfigError`` (a
            ``ValueError``) for an unknown field or any value
            :meth:`DetectionModelConfig.validate` refuses.
    """
    params = get_detector_params(name)
    known = {f.name for f in dataclasses.fields(DetectionModelConfig)} - {"name", "image_size"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"Unknown EfficientDet parameter(s) {unknown} for {name}; "
            f"valid keys: {', '.join(sorted(known | {'image_size'}))}."
        )
    params.update(overrides)
    if image_size is not None:
        params["image_size"] = parse_image_size(image_size)
    config = DetectionModelConfig(**params)
    config.validate(require_exact_strides=require_exact_strides)
    return config


def build_network(model_config, sync_bn=False):
    """The pure detector network of ``model_config`` (see :func:`efficientdet.network.build_detector`)."""
    from efficientdet.network import build_detector

    return build_detector(model_config, sync_bn=sync_bn)


def make_experiment(config, distribution):
    """The detection experiment (data, task, evaluation) of ``config``."""
    from efficientdet.experiment import DetectionExperiment

    return DetectionExperiment(config, distribution)
