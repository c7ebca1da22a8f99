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
from efficientdet.bifpn import BiFPN, ResampleFeatureMap
from efficientdet.heads import BoxNet, ClassNet
from efficientdet.model_configs import resolve_detector_params

_BACKBONE_MAX_LEVEL = 5


def build_efficientdet(model_name="efficientdet-d0", num_classes=90, image_size=None, **overrides):
    """Builds EfficientDet as a functional ``keras.Model``.

    Args:
        model_name: ``efficientdet-d0`` … ``efficientdet-d7``, ``efficientdet-d7x``.
        num_classes: object classes of the class head (90 for COCO).
        image_size: ``int`` or ``(height, width)``; default: the detector's own.
            Any size works; multiples of ``2**max_level`` give every level an
            exact halving (``H_l = ceil(H / 2^l)`` in general).
        **overrides: keys of :func:`efficientdet.model_configs.get_detector_params`,
            e.g. ``fpn_weight_method="sum"``, ``backbone_drop_path_rate=0.2``,
            ``sync_bn=True``.

    Returns:
        A model mapping normalized float images ``[B, H, W, 3]`` to
        ``{"class_outputs": [...], "box_outputs": [...]}``: one tensor per level
        P``min_level`` … P``max_level``, ``[B, H_l, W_l, num_anchors * num_classes]``
        (channel ``anchor * num_classes + class``) and ``[B, H_l, W_l,
        num_anchors * 4]`` (channel ``anchor * 4 + (ty, tx, th, tw)``), float32
        under any precision policy.

    Raises:
        ValueError: unknown model name or override key, bad image size or levels.
    """
    p = resolve_detector_params(model_name, image_size=image_size, **overrides)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    min_level, max_level = p["min_level"], p["max_level"]
    if not 1 <= min_level <= _BACKBONE_MAX_LEVEL or max_level <= min_level:
        raise ValueError(
            f"Levels must satisfy 1 <= min_level <= {_BACKBONE_MAX_LEVEL} and "
            f"max_level > min_level, got min_level={min_level}, max_level={max_level}."
        )
    bn = dict(bn_momentum=p["bn_momentum"], bn_epsilon=p["bn_epsilon"], sync_bn=p["sync_bn"])
    height, width = p["image_size"]
    images = keras.Input((height, width, 3), name="images")

    backbone_levels = tuple(range(min_level, min(max_level, _BACKBONE_MAX_LEVEL) + 1))
    backbone = EfficientNet(
        p["backbone_name"],
        endpoint_levels=backbone_levels,
        drop_path_rate=p["backbone_drop_path_rate"],
        activation=p["activation"],
        **bn,
    )
    endpoints = backbone(images)
    feats = [endpoints[f"P{level}"] for level in backbone_levels]
    for level in range(backbone_levels[-1] + 1, max_level + 1):
        resample = ResampleFeatureMap(
            p["fpn_num_filters"],
            input_level=level - 1,
            target_level=level,
            apply_bn=p["apply_bn_for_resampling"],
            conv_after_downsample=p["conv_after_downsample"],
            name=f"resample_p{level}",
            **bn,
        )
        feats.append(resample(feats[-1]))

    if p["fpn_name"] != "bifpn":
        raise ValueError(f"Unsupported fpn_name {p['fpn_name']!r}; only 'bifpn' is implemented.")
    fpn_feats = BiFPN(
        p["fpn_num_filters"],
        p["fpn_cell_repeats"],
        min_level=min_level,
        max_level=max_level,
        weight_method=p["fpn_weight_method"],
        separable_conv=p["separable_conv"],
        activation=p["activation"],
        apply_bn_for_resampling=p["apply_bn_for_resampling"],
        conv_after_downsample=p["conv_after_downsample"],
        conv_bn_act_pattern=p["conv_bn_act_pattern"],
        name="fpn_cells",
        **bn,
    )(feats)

    num_anchors = p["num_scales"] * len(p["aspect_ratios"])
    head = dict(
        num_filters=p["fpn_num_filters"],
        repeats=p["box_class_repeats"],
        min_level=min_level,
        max_level=max_level,
        separable_conv=p["separable_conv"],
        activation=p["activation"],
        drop_path_rate=p["head_drop_path_rate"],
        **bn,
    )
    class_outputs = ClassNet(num_classes, num_anchors, name="class_net", **head)(fpn_feats)
    box_outputs = BoxNet(num_anchors, name="box_net", **head)(fpn_feats)
    return keras.Model(
        images,
        {"class_outputs": list(class_outputs), "box_outputs": list(box_outputs)},
        name=p["name"],
    )
