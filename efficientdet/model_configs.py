"""Compound-scaling table of EfficientDet D0–D7x (Tan, Pang & Le 2020, §4.2, Table 1)
and EfficientDet-Lite0–4 (the official on-device detectors).

The one place that says what each detector is: the settings every detector
shares, one row per detector for what differs, and the architecture limits the
network builder relies on. Values are those of the official google/automl
release (``efficientdet_model_param_dict`` on top of its default detection
config). D6, D7 and D7x fuse BiFPN inputs with an unweighted sum (the official
choice for training stability at that size); D7 enlarges the anchors; D7x adds
a sixth level (P3–P8).

The Lite rows are the official google/automl ``efficientdet-lite*`` settings:
EfficientNet-Lite backbones (ReLU6, no squeeze-excite), ReLU6 everywhere, an
unweighted-sum BiFPN (no fusion weights: cheap and int8-friendly), pixels
normalised as ``(x - 127) / 128``, and anchor scale 3 for Lite0/1/2/3x (Lite3
and Lite4 keep the default 4).

Plain data, no imports of the rest of the package:
:class:`efficientdet.config.DetectionModelConfig` takes its defaults from the
``efficientdet-d0`` entry, :func:`efficientdet.config.presets` and
:func:`efficientdet.config.preset_config` read the other rows, and the latter
is where a detector's settings are validated (once).
"""
import copy

DEFAULT_DETECTOR = "efficientdet-d0"

# BiFPN input fusions (see efficientdet.bifpn.FNode) and feature networks.
FPN_WEIGHT_METHODS = ("fastattn", "attn", "sum", "channel_attn", "channel_fastattn")
FPN_NAMES = ("bifpn",)
# The EfficientNet backbone has endpoints at levels 1..5 (strides 2..32, the
# official ``reduction_1`` … ``reduction_5``); levels above 5 are made by
# resampling the level below, so the lowest pyramid level must be a backbone one.
BACKBONE_MAX_LEVEL = 5

# Settings every detector shares unless its own row overrides them.
_SHARED = dict(
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
    # Pixel normalisation of the checkpoints (dataset.preprocessing.NORMALIZATIONS).
    preprocessing="imagenet_mean_std",
    bn_momentum=0.99,
    bn_epsilon=1e-3,
    # Residual drop path in the class/box heads (official ``survival_prob``
    # is unset, i.e. off).
    head_drop_path_rate=0.0,
)

# What every EfficientDet-Lite shares (module docstring).
_LITE = dict(activation="relu6", fpn_weight_method="sum", preprocessing="scale_127")

# name: (backbone, image size, BiFPN width, BiFPN cells, head repeats,
#        backbone drop path rate, other fields that differ from _SHARED)
# The backbone's stochastic depth (rate of its last block) is 0.2 except for
# the B0 backbone of D0, where the official code switches it off (Lite0 keeps it).
_ROWS = {
    "efficientdet-d0": ("efficientnet-b0", 512, 64, 3, 3, 0.0, {}),
    "efficientdet-d1": ("efficientnet-b1", 640, 88, 4, 3, 0.2, {}),
    "efficientdet-d2": ("efficientnet-b2", 768, 112, 5, 3, 0.2, {}),
    "efficientdet-d3": ("efficientnet-b3", 896, 160, 6, 4, 0.2, {}),
    "efficientdet-d4": ("efficientnet-b4", 1024, 224, 7, 4, 0.2, {}),
    "efficientdet-d5": ("efficientnet-b5", 1280, 288, 7, 4, 0.2, {}),
    "efficientdet-d6": ("efficientnet-b6", 1280, 384, 8, 5, 0.2, dict(fpn_weight_method="sum")),
    "efficientdet-d7": (
        "efficientnet-b6", 1536, 384, 8, 5, 0.2, dict(fpn_weight_method="sum", anchor_scale=5.0)
    ),
    "efficientdet-d7x": (
        "efficientnet-b7", 1536, 384, 8, 5, 0.2, dict(fpn_weight_method="sum", max_level=8)
    ),
    "efficientdet-lite0": ("efficientnet-lite0", 320, 64, 3, 3, 0.2, dict(_LITE, anchor_scale=3.0)),
    "efficientdet-lite1": ("efficientnet-lite1", 384, 88, 4, 3, 0.2, dict(_LITE, anchor_scale=3.0)),
    "efficientdet-lite2": ("efficientnet-lite2", 448, 112, 5, 3, 0.2, dict(_LITE, anchor_scale=3.0)),
    "efficientdet-lite3": ("efficientnet-lite3", 512, 160, 6, 4, 0.2, dict(_LITE)),
    "efficientdet-lite3x": ("efficientnet-lite3", 640, 200, 6, 4, 0.2, dict(_LITE, anchor_scale=3.0)),
    "efficientdet-lite4": ("efficientnet-lite4", 640, 224, 7, 4, 0.2, dict(_LITE)),
}


def list_detector_names():
    """All detector names of the table, D0 first."""
    return list(_ROWS)


def get_detector_params(name):
    """The architecture of detector ``name`` as a new dict.

    Keys: ``name`` and every architecture field of
    :class:`efficientdet.config.DetectionModelConfig`: ``backbone_name``,
    ``image_size`` (height, width), ``fpn_num_filters``, ``fpn_cell_repeats``,
    ``box_class_repeats``, ``backbone_drop_path_rate``, ``min_level``,
    ``max_level``, ``num_scales``, ``aspect_ratios``, ``anchor_scale``,
    ``fpn_name``, ``fpn_weight_method``, ``separable_conv``,
    ``apply_bn_for_resampling``, ``conv_after_downsample``,
    ``conv_bn_act_pattern``, ``activation``, ``preprocessing``, ``bn_momentum``,
    ``bn_epsilon``, ``head_drop_path_rate``. Unvalidated data: a validated config comes from
    :func:`efficientdet.config.preset_config`.

    Args:
        name: ``efficientdet-d0`` … ``efficientdet-d7``, ``efficientdet-d7x``,
            ``efficientdet-lite0`` … ``efficientdet-lite4``, ``efficientdet-lite3x``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if name not in _ROWS:
        raise ValueError(
            f"Unknown EfficientDet {name!r}; valid names: {', '.join(list_detector_names())}."
        )
    backbone, size, width, cells, repeats, backbone_drop_path_rate, extra = _ROWS[name]
    params = copy.deepcopy(_SHARED)
    params.update(
        name=name,
        backbone_name=backbone,
        image_size=(size, size),
        fpn_num_filters=width,
        fpn_cell_repeats=cells,
        box_class_repeats=repeats,
        backbone_drop_path_rate=backbone_drop_path_rate,
    )
    params.update(extra)
    return params
