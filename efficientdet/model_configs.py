"""Compound-scaling table of EfficientDet D0–D7x (Tan, Pang & Le 2020, §4.2, Table 1).

One backbone / BiFPN / head setting per detector, with the values of the
official google/automl release (``efficientdet_model_param_dict`` on top of
its default detection config). D6, D7 and D7x fuse BiFPN inputs with an
unweighted sum (the official choice for training stability at that size); D7
enlarges the anchors; D7x adds a sixth level (P3–P8).

Only :func:`efficientdet.network.build_efficientdet` reads this table; layers
take explicit keyword arguments.
"""
import copy

# Settings every detector shares unless its own row overrides them.
_COMMON = dict(
    min_level=3,
    max_level=7,
    num_scales=3,
    aspect_ratios=(1.0, 2.0, 0.5),
    anchor_scale=4.0,
    fpn_name="bifpn",
    fpn_weight_method="fastattn",
    separable_conv=True,
    apply_bn_for_resampling=True,
    conv_after_downsample=False,
    conv_bn_act_pattern=False,
    activation="swish",
    bn_momentum=0.99,
    bn_epsilon=1e-3,
    # Stochastic depth of the backbone's last block; the official code
    # switches it off for the B0 backbone of D0 only.
    backbone_drop_path_rate=0.2,
    # Residual drop path in the class/box heads (official ``survival_prob``
    # is unset, i.e. off).
    head_drop_path_rate=0.0,
    sync_bn=False,
)

# name: (backbone, image size, BiFPN width, BiFPN cells, head repeats, extra overrides)
_ROWS = {
    "efficientdet-d0": ("efficientnet-b0", 512, 64, 3, 3, dict(backbone_drop_path_rate=0.0)),
    "efficientdet-d1": ("efficientnet-b1", 640, 88, 4, 3, {}),
    "efficientdet-d2": ("efficientnet-b2", 768, 112, 5, 3, {}),
    "efficientdet-d3": ("efficientnet-b3", 896, 160, 6, 4, {}),
    "efficientdet-d4": ("efficientnet-b4", 1024, 224, 7, 4, {}),
    "efficientdet-d5": ("efficientnet-b5", 1280, 288, 7, 4, {}),
    "efficientdet-d6": ("efficientnet-b6", 1280, 384, 8, 5, dict(fpn_weight_method="sum")),
    "efficientdet-d7": (
        "efficientnet-b6", 1536, 384, 8, 5, dict(fpn_weight_method="sum", anchor_scale=5.0)
    ),
    "efficientdet-d7x": (
        "efficientnet-b7", 1536, 384, 8, 5, dict(fpn_weight_method="sum", max_level=8)
    ),
}


def list_detector_names():
    """All detector names :func:`get_detector_params` accepts, D0 first."""
    return list(_ROWS)


def get_detector_params(name):
    """Returns the parameters of one detector as a new dict.

    Keys: ``name``, ``backbone_name``, ``image_size`` (height, width),
    ``fpn_num_filters``, ``fpn_cell_repeats``, ``box_class_repeats``,
    ``min_level``, ``max_level``, ``num_scales``, ``aspect_ratios``,
    ``anchor_scale``, ``fpn_name``, ``fpn_weight_method``, ``separable_conv``,
    ``apply_bn_for_resampling``, ``conv_after_downsample``,
    ``conv_bn_act_pattern``, ``activation``, ``bn_momentum``, ``bn_epsilon``,
    ``backbone_drop_path_rate``, ``head_drop_path_rate``, ``sync_bn``.

    Args:
        name: ``efficientdet-d0`` … ``efficientdet-d7``, ``efficientdet-d7x``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if name not in _ROWS:
        raise ValueError(
            f"Unknown EfficientDet {name!r}; valid names: {', '.join(list_detector_names())}."
        )
    backbone, size, width, cells, repeats, extra = _ROWS[name]
    params = copy.deepcopy(_COMMON)
    params.update(
        name=name,
        backbone_name=backbone,
        image_size=(size, size),
        fpn_num_filters=width,
        fpn_cell_repeats=cells,
        box_class_repeats=repeats,
    )
    params.update(extra)
    return params


def resolve_detector_params(name, image_size=None, **overrides):
    """The parameters of detector ``name`` with explicit overrides applied.

    Args:
        name: a name from :func:`list_detector_names`.
        image_size: ``int`` (square) or ``(height, width)``; default: the
            detector's own.
        **overrides: any key of :func:`get_detector_params` (e.g.
            ``fpn_weight_method="sum"``, ``max_level=8``).

    Raises:
        ValueError: for an unknown name or override key, or a bad image size.
    """
    params = get_detector_params(name)
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ValueError(
            f"Unknown EfficientDet parameter(s) {unknown} for {name}; "
            f"valid keys: {', '.join(sorted(params))}."
        )
    params.update(overrides)
    if image_size is not None:
        params["image_size"] = parse_image_size(image_size)
    return params


def parse_image_size(image_size):
    """``512`` → ``(512, 512)``; ``(height, width)`` → ``(height, width)`` as ints.

    Raises:
        ValueError: for anything else (strings are refused: the official
            ``"WxH"`` strings put width first, our sizes put height first).
    """
    if isinstance(image_size, (str, bytes)):
        raise ValueError(
            f"image_size must be an int or (height, width), got the string {image_size!r}."
        )
    try:
        size = (image_size, image_size) if not hasattr(image_size, "__len__") else tuple(image_size)
        ok = len(size) == 2 and all(int(v) == v and v > 0 for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"image_size must be a positive int or (height, width) of positive ints, got {image_size!r}."
        )
    return tuple(int(v) for v in size)
