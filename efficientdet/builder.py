"""Detector by name: the table row → validated config → network, in one path.

:func:`build_efficientdet` is :func:`efficientdet.config.preset_config` followed
by :func:`efficientdet.network.build_detector`, the same builder the experiment
config reaches through :func:`efficientdet.config.build_network`.
"""
from efficientdet.config import preset_config
from efficientdet.network import build_detector


def build_efficientdet(
    model_name="efficientdet-d0", num_classes=90, image_size=None, sync_bn=False, **overrides
):
    """Builds EfficientDet ``model_name`` as a functional ``keras.Model``.

    Args:
        model_name: ``efficientdet-d0`` … ``efficientdet-d7``, ``efficientdet-d7x``.
        num_classes: object classes of the class head (90 for COCO).
        image_size: ``int`` or ``(height, width)``; default: the detector's own.
            Any size works; multiples of ``2**max_level`` give every level an
            exact halving (``H_l = ceil(H / 2^l)`` in general).
        sync_bn: synchronized batch norm across replicas (a runtime setting,
            not part of the model config).
        **overrides: other ``DetectionModelConfig`` fields, e.g.
            ``fpn_weight_method="sum"``, ``backbone_drop_path_rate=0.2``.

    Returns:
        The model of :func:`efficientdet.network.build_detector`: normalized
        float images ``[B, H, W, 3]`` → ``{"class_outputs": [...],
        "box_outputs": [...]}``, one tensor per level P``min_level`` …
        P``max_level``, ``[B, H_l, W_l, num_anchors * num_classes]`` and
        ``[B, H_l, W_l, num_anchors * 4]``, float32 under any precision policy.

    Raises:
        ValueError: unknown model name or override key, bad image size, levels
            or any other value ``DetectionModelConfig.validate`` refuses.
    """
    config = preset_config(
        model_name,
        image_size=image_size,
        # The bare network handles any size; the multiple-of-stride rule is the
        # training pipeline's and the anchors'.
        require_exact_strides=False,
        num_classes=num_classes,
        **overrides,
    )
    return build_detector(config, sync_bn=sync_bn)
