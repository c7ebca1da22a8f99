"""Block specifications and compound scaling of EfficientNet V1 (Tan & Le 2019,
Table 1 and §3.3) and EfficientNetV2 (Tan & Le 2021, Table 4 and §3.3).

A stage is written in the compact string form used by the papers' code:
``r2_k3_s2_e4_i24_o48_c1_se0.25`` = 2 repeats, 3×3 kernel, stride 2 (first
block), expansion 4, 24 → 48 filters, Fused-MBConv (``c1``; ``c0`` or absent =
MBConv), squeeze-excite ratio 0.25. ``noskip`` disables the identity skip.
"""
import dataclasses
import math
import re

MBCONV = "mbconv"
FUSED_MBCONV = "fused_mbconv"


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One stage: ``repeats`` blocks; only the first has ``strides`` and ``input_filters``."""

    repeats: int
    kernel_size: int
    strides: int
    expand_ratio: float
    input_filters: int
    output_filters: int
    se_ratio: float | None = None
    block_type: str = MBCONV
    id_skip: bool = True

    @classmethod
    def parse(cls, text):
        """Parses ``r1_k3_s11_e1_i32_o16_se0.25`` style strings (``s11`` = stride 1)."""
        fields = {}
        id_skip = True
        for part in text.split("_"):
            if part == "noskip":
                id_skip = False
                continue
            match = re.fullmatch(r"([a-z]+)([0-9.]+)", part)
            if not match:
                raise ValueError(f"Cannot parse block spec field {part!r} in {text!r}.")
            fields[match.group(1)] = match.group(2)
        missing = {"r", "k", "s", "e", "i", "o"} - set(fields)
        if missing:
            raise ValueError(f"Block spec {text!r} lacks fields {sorted(missing)}.")
        strides = fields["s"]
        return cls(
            repeats=int(fields["r"]),
            kernel_size=int(fields["k"]),
            strides=int(strides[0]),
            expand_ratio=float(fields["e"]) if "." in fields["e"] else int(fields["e"]),
            input_filters=int(fields["i"]),
            output_filters=int(fields["o"]),
            se_ratio=float(fields["se"]) if "se" in fields else None,
            block_type=FUSED_MBCONV if fields.get("c") == "1" else MBCONV,
            id_skip=id_skip,
        )


@dataclasses.dataclass(frozen=True)
class EfficientNetSpec:
    """A full network: stages plus compound-scaling coefficients and defaults."""

    name: str
    blocks: tuple
    width_coefficient: float
    depth_coefficient: float
    train_size: int
    eval_size: int
    dropout_rate: float
    bn_momentum: float
    bn_epsilon: float = 1e-3
    depth_divisor: int = 8
    min_depth: int | None = None
    feature_size: int = 1280
    activation: str = "swish"
    randaug_magnitude: int | None = None
    mixup_alpha: float = 0.0
    # EfficientNet-Lite: no squeeze-excite (poorly supported on phone
    # accelerators), and stem (32), head (1280) and the repeats of the first and
    # last stage stay unscaled.
    use_se: bool = True
    fix_head_stem: bool = False
    # Pixel normalisation of the official checkpoints
    # (dataset.preprocessing.NORMALIZATIONS): V1 the ImageNet mean/std, Lite
    # (x - 127) / 128, V2 (x - 128) / 128.
    preprocessing: str = "imagenet_mean_std"


_V1_BLOCKS = (
    "r1_k3_s11_e1_i32_o16_se0.25",
    "r2_k3_s22_e6_i16_o24_se0.25",
    "r2_k5_s22_e6_i24_o40_se0.25",
    "r3_k3_s22_e6_i40_o80_se0.25",
    "r3_k5_s11_e6_i80_o112_se0.25",
    "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25",
)

# (width, depth, train/eval resolution, dropout) — Tan & Le 2019, Table 1 / official params.
_V1_PARAMS = {
    "efficientnet-b0": (1.0, 1.0, 224, 0.2),
    "efficientnet-b1": (1.0, 1.1, 240, 0.2),
    "efficientnet-b2": (1.1, 1.2, 260, 0.3),
    "efficientnet-b3": (1.2, 1.4, 300, 0.3),
    "efficientnet-b4": (1.4, 1.8, 380, 0.4),
    "efficientnet-b5": (1.6, 2.2, 456, 0.4),
    "efficientnet-b6": (1.8, 2.6, 528, 0.5),
    "efficientnet-b7": (2.0, 3.1, 600, 0.5),
}

# EfficientNet-Lite (the official TFLite-friendly variant of V1): the V1 blocks
# and scaling rules with ReLU6, no squeeze-excite and fixed stem/head; its own
# resolution table. (width, depth, resolution, dropout).
_LITE_PARAMS = {
    "efficientnet-lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet-lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet-lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet-lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet-lite4": (1.4, 1.8, 300, 0.3),
}

_V2_BASE_BLOCKS = (
    "r1_k3_s1_e1_i32_o16_c1",
    "r2_k3_s2_e4_i16_o32_c1",
    "r2_k3_s2_e4_i32_o48_c1",
    "r3_k3_s2_e4_i48_o96_se0.25",
    "r5_k3_s1_e6_i96_o112_se0.25",
    "r8_k3_s2_e6_i112_o192_se0.25",
)
_V2_S_BLOCKS = (
    "r2_k3_s1_e1_i24_o24_c1",
    "r4_k3_s2_e4_i24_o48_c1",
    "r4_k3_s2_e4_i48_o64_c1",
    "r6_k3_s2_e4_i64_o128_se0.25",
    "r9_k3_s1_e6_i128_o160_se0.25",
    "r15_k3_s2_e6_i160_o256_se0.25",
)
_V2_M_BLOCKS = (
    "r3_k3_s1_e1_i24_o24_c1",
    "r5_k3_s2_e4_i24_o48_c1",
    "r5_k3_s2_e4_i48_o80_c1",
    "r7_k3_s2_e4_i80_o160_se0.25",
    "r14_k3_s1_e6_i160_o176_se0.25",
    "r18_k3_s2_e6_i176_o304_se0.25",
    "r5_k3_s1_e6_i304_o512_se0.25",
)
_V2_L_BLOCKS = (
    "r4_k3_s1_e1_i32_o32_c1",
    "r7_k3_s2_e4_i32_o64_c1",
    "r7_k3_s2_e4_i64_o96_c1",
    "r10_k3_s2_e4_i96_o192_se0.25",
    "r19_k3_s1_e6_i192_o224_se0.25",
    "r25_k3_s2_e6_i224_o384_se0.25",
    "r7_k3_s1_e6_i384_o640_se0.25",
)

# The ImageNet-21k model: deeper than L, wider stages 5 and 6.
_V2_XL_BLOCKS = (
    "r4_k3_s1_e1_i32_o32_c1",
    "r8_k3_s2_e4_i32_o64_c1",
    "r8_k3_s2_e4_i64_o96_c1",
    "r16_k3_s2_e4_i96_o192_se0.25",
    "r24_k3_s1_e6_i192_o256_se0.25",
    "r32_k3_s2_e6_i256_o512_se0.25",
    "r8_k3_s1_e6_i512_o640_se0.25",
)

# (blocks, width, depth, train size, eval size, dropout, randaug magnitude, mixup alpha)
# — Tan & Le 2021, Table 4 and the official training recipes.
_V2_PARAMS = {
    "efficientnetv2-s": (_V2_S_BLOCKS, 1.0, 1.0, 300, 384, 0.2, 10, 0.0),
    "efficientnetv2-m": (_V2_M_BLOCKS, 1.0, 1.0, 384, 480, 0.3, 15, 0.2),
    "efficientnetv2-l": (_V2_L_BLOCKS, 1.0, 1.0, 384, 480, 0.4, 20, 0.5),
    "efficientnetv2-xl": (_V2_XL_BLOCKS, 1.0, 1.0, 384, 512, 0.4, 20, 0.5),
    "efficientnetv2-b0": (_V2_BASE_BLOCKS, 1.0, 1.0, 192, 224, 0.2, 5, 0.0),
    "efficientnetv2-b1": (_V2_BASE_BLOCKS, 1.0, 1.1, 192, 240, 0.2, 5, 0.0),
    "efficientnetv2-b2": (_V2_BASE_BLOCKS, 1.1, 1.2, 208, 260, 0.3, 5, 0.0),
    "efficientnetv2-b3": (_V2_BASE_BLOCKS, 1.2, 1.4, 240, 300, 0.3, 5, 0.0),
}


def list_efficientnet_names():
    """All network names :func:`get_efficientnet_spec` accepts."""
    return sorted(_V1_PARAMS) + sorted(_LITE_PARAMS) + sorted(_V2_PARAMS)


def _spec(name, blocks, width, depth, train_size, eval_size, dropout, **settings):
    return EfficientNetSpec(
        name=name, blocks=tuple(BlockSpec.parse(b) for b in blocks), width_coefficient=width,
        depth_coefficient=depth, train_size=train_size, eval_size=eval_size,
        dropout_rate=dropout, **settings)


def get_efficientnet_spec(name):
    """Returns the :class:`EfficientNetSpec` of ``efficientnet-b0..b7``,
    ``efficientnet-lite0..4`` or ``efficientnetv2-{s,m,l,xl,b0..b3}``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    # V1 and Lite share the blocks and scaling rules; Lite adds its own settings.
    lite = dict(activation="relu6", use_se=False, fix_head_stem=True, preprocessing="scale_127")
    for table, extra in ((_V1_PARAMS, {}), (_LITE_PARAMS, lite)):
        if name in table:
            width, depth, size, dropout = table[name]
            return _spec(name, _V1_BLOCKS, width, depth, size, size, dropout, bn_momentum=0.99,
                         **extra)
    if name in _V2_PARAMS:
        blocks, width, depth, train_size, eval_size, dropout, randaug, mixup = _V2_PARAMS[name]
        return _spec(name, blocks, width, depth, train_size, eval_size, dropout, bn_momentum=0.9,
                     randaug_magnitude=randaug, mixup_alpha=mixup, preprocessing="scale_128")
    raise ValueError(
        f"Unknown EfficientNet {name!r}; valid names: {', '.join(list_efficientnet_names())}."
    )


def round_filters(filters, width_coefficient, depth_divisor=8, min_depth=None):
    """Scales a channel count by the width coefficient, rounded to ``depth_divisor``
    and never below 90% of the exact value (official rule)."""
    if not width_coefficient:
        return filters
    scaled = filters * width_coefficient
    min_depth = min_depth or depth_divisor
    rounded = max(min_depth, int(scaled + depth_divisor / 2) // depth_divisor * depth_divisor)
    if rounded < 0.9 * scaled:
        rounded += depth_divisor
    return int(rounded)


def round_repeats(repeats, depth_coefficient):
    """Scales the number of blocks in a stage by the depth coefficient (ceil)."""
    return int(math.ceil(depth_coefficient * repeats))
