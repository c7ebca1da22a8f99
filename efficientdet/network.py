"""The pure EfficientDet network D0–D7x (Tan, Pang & Le 2020, §3.3, Figure 3).

images → EfficientNet backbone (P3–P5) → ``resample_p6`` … (extra levels by
1×1 conv + BN + max-pool) → BiFPN (``fpn_cells``) → shared class / box heads.
No preprocessing, anchors, loss or NMS: those belong to the task and export
wrappers. Top-level layer names (``efficientnet-b0``, ``resample_p6``,
``fpn_cells``, ``class_net``, ``box_net``) make weight paths the official
google/automl checkpoint names.
"""
import keras

from common.backbones.efficientnet import EfficientNet
from efficientdet.bifpn import BiFPN, BiFPNSettings, ResampleFeatureMap
from efficientdet.heads import BoxNet, ClassNet
from efficientdet.model_configs import BACKBONE_MAX_LEVEL


def bifpn_settings(model_config, sync_bn=False):
    """The :class:`BiFPNSettings` of a ``DetectionModelConfig`` (one per network)."""
    return BiFPNSettings(
        weight_method=model_config.fpn_weight_method,
        separable_conv=model_config.separable_conv,
        activation=model_config.activation,
        apply_bn_for_resampling=model_config.apply_bn_for_resampling,
        conv_after_downsample=model_config.conv_after_downsample,
        conv_bn_act_pattern=model_config.conv_bn_act_pattern,
        bn_momentum=model_config.bn_momentum,
        bn_epsilon=model_config.bn_epsilon,
        sync_bn=bool(sync_bn),
    )


def build_detector(model_config, sync_bn=False):
    """Builds the EfficientDet described by a validated ``DetectionModelConfig``.

    The config is trusted: it was checked once when it was made
    (``load_config`` or :func:`efficientdet.config.preset_config`). To build a
    detector by name, see :func:`efficientdet.builder.build_efficientdet`.

    Args:
        model_config: an :class:`efficientdet.config.DetectionModelConfig`.
        sync_bn: synchronized batch norm across replicas.

    Returns:
        A functional ``keras.Model`` named ``model_config.name`` mapping
        normalized float images ``[B, H, W, 3]`` (``(H, W) =
        model_config.image_size``) to ``{"class_outputs": [...], "box_outputs":
        [...]}``: one tensor per level P``min_level`` … P``max_level``,
        ``[B, H_l, W_l, num_anchors * num_classes]`` (channel ``anchor *
        num_classes + class``) and ``[B, H_l, W_l, num_anchors * 4]`` (channel
        ``anchor * 4 + (ty, tx, th, tw)``), float32 under any precision policy.
    """
    c = model_config
    min_level, max_level = c.min_level, c.max_level
    fpn = bifpn_settings(c, sync_bn=sync_bn)
    bn = dict(bn_momentum=fpn.bn_momentum, bn_epsilon=fpn.bn_epsilon, sync_bn=fpn.sync_bn)
    height, width = c.image_size
    images = keras.Input((height, width, 3), name="images")

    backbone_levels = tuple(range(min_level, min(max_level, BACKBONE_MAX_LEVEL) + 1))
    backbone = EfficientNet(
        c.backbone_name,
        endpoint_levels=backbone_levels,
        drop_path_rate=c.backbone_drop_path_rate,
        activation=c.activation,
        **bn,
    )
    endpoints = backbone(images)
    feats = [endpoints[f"P{level}"] for level in backbone_levels]
    # Levels above the backbone's: 1×1 conv (+BN) and max-pool of the level below.
    for level in range(backbone_levels[-1] + 1, max_level + 1):
        resample = ResampleFeatureMap(
            c.fpn_num_filters,
            input_level=level - 1,
            target_level=level,
            apply_bn=fpn.apply_bn_for_resampling,
            conv_after_downsample=fpn.conv_after_downsample,
            name=f"resample_p{level}",
            **bn,
        )
        feats.append(resample(feats[-1]))

    fpn_feats = BiFPN(
        c.fpn_num_filters,
        c.fpn_cell_repeats,
        min_level=min_level,
        max_level=max_level,
        settings=fpn,
        name="fpn_cells",
    )(feats)

    head = dict(
        num_filters=c.fpn_num_filters,
        repeats=c.box_class_repeats,
        min_level=min_level,
        max_level=max_level,
        separable_conv=c.separable_conv,
        activation=c.activation,
        drop_path_rate=c.head_drop_path_rate,
        **bn,
    )
    class_outputs = ClassNet(c.num_classes, c.num_anchors, name="class_net", **head)(fpn_feats)
    box_outputs = BoxNet(c.num_anchors, name="box_net", **head)(fpn_feats)
    return keras.Model(
        images,
        {"class_outputs": list(class_outputs), "box_outputs": list(box_outputs)},
        name=c.name,
    )
