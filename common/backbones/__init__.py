"""EfficientNet V1 / V2 block specifications and the one network builder."""
from common.backbones.block_specs import (
    BlockSpec,
    EfficientNetSpec,
    get_efficientnet_spec,
    list_efficientnet_names,
    round_filters,
    round_repeats,
)
from common.backbones.efficientnet import EfficientNet

__all__ = [
    "BlockSpec",
    "EfficientNet",
    "EfficientNetSpec",
    "get_efficientnet_spec",
    "list_efficientnet_names",
    "round_filters",
    "round_repeats",
]
