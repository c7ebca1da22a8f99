"""EfficientNet builder: block specs, scaling, exact parameter counts, official names."""
import keras
import numpy as np
import pytest

from common.backbones import (
    BlockSpec,
    EfficientNet,
    get_efficientnet_spec,
    list_efficientnet_names,
    round_filters,
    round_repeats,
)
from common.model_stats import count_parameters


def _official_path(path):
    """Our Keras DepthwiseConv2D names its weight ``kernel``; the official one
    ``depthwise_kernel``. That is the only rename in the backbone."""
    return path.replace("depthwise_conv2d/kernel", "depthwise_conv2d/depthwise_kernel")


def _functional(layer, size):
    images = keras.Input((size, size, 3))
    return keras.Model(images, layer(images))


def test_block_spec_parsing():
    spec = BlockSpec.parse("r4_k3_s2_e4_i24_o48_c1")
    assert (spec.repeats, spec.kernel_size, spec.strides, spec.expand_ratio) == (4, 3, 2, 4)
    assert (spec.input_filters, spec.output_filters, spec.block_type) == (24, 48, "fused_mbconv")
    assert spec.se_ratio is None and spec.id_skip
    v1 = BlockSpec.parse("r1_k3_s11_e1_i32_o16_se0.25_noskip")
    assert v1.strides == 1 and v1.se_ratio == 0.25 and v1.block_type == "mbconv" and not v1.id_skip
    with pytest.raises(ValueError, match="lacks fields"):
        BlockSpec.parse("r1_k3_s1")


def test_compound_scaling_rules():
    assert round_filters(32, 1.0) == 32
    assert round_filters(32, 1.1) == 32  # 35.2 → 32 (within 90%)
    assert round_filters(1280, 1.2) == 1536
    assert round_filters(320, 2.0) == 640
    assert round_filters(16, 1.4) == 24  # 22.4 → 24
    assert round_repeats(3, 1.1) == 4 and round_repeats(3, 1.0) == 3


def test_unknown_network_name_lists_valid_ones():
    with pytest.raises(ValueError, match="efficientnetv2-s"):
        get_efficientnet_spec("efficientnetv2-xs")
    assert "efficientnet-b7" in list_efficientnet_names()


def test_efficientnetv2_s_exact_parameter_count():
    model = _functional(EfficientNet("efficientnetv2-s", num_classes=1000), 384)
    assert count_parameters(model) == (21_458_488, 153_872)


@pytest.mark.parametrize(
    "name,expected",
    [
        # keras.applications.EfficientNetV2B0..B3 / V1 B0 without the input rescaling layer.
        ("efficientnetv2-b0", (7_139_704, 60_608)),
        ("efficientnet-b0", (5_288_548, 42_016)),
    ],
)
def test_other_classifier_parameter_counts(name, expected):
    model = _functional(EfficientNet(name, num_classes=1000), 64)
    assert count_parameters(model) == expected


def test_b0_backbone_matches_official_detector_backbone(automl_fixtures, read_weight_list):
    official = {
        name: shape
        for name, shape in read_weight_list(automl_fixtures / "effdet_d0" / "keras_weights.txt").items()
        if name.startswith("efficientnet-b0/")
    }
    backbone = EfficientNet("efficientnet-b0", endpoint_levels=(3, 4, 5))
    _functional(backbone, 128)
    ours = {_official_path(v.path): tuple(v.shape) for v in backbone.weights}
    assert len(ours) == len(official) == 304
    assert ours == official


@pytest.mark.parametrize("fixture,name", [("effnetv2_s", "efficientnetv2-s"),
                                          ("effnetv2_b0", "efficientnetv2-b0")])
def test_v2_classifier_matches_official_names(automl_fixtures, read_weight_list, fixture, name):
    official = read_weight_list(automl_fixtures / fixture / "keras_weights.txt")
    layer = EfficientNet(name, num_classes=1000)
    _functional(layer, 64)
    ours = {_official_path(v.path): tuple(v.shape) for v in layer.weights}
    assert ours == official


def test_endpoints_have_strides_4_to_32():
    backbone = EfficientNet("efficientnet-b0", endpoint_levels=(2, 3, 4, 5))
    features = backbone(np.zeros((1, 128, 96, 3), "float32"))
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "P2": (1, 32, 24, 24),
        "P3": (1, 16, 12, 40),
        "P4": (1, 8, 6, 112),
        "P5": (1, 4, 3, 320),
    }


def test_v2_s_endpoints_and_block_count():
    backbone = EfficientNet("efficientnetv2-s", endpoint_levels=(3, 4, 5))
    features = backbone(np.zeros((1, 64, 64, 3), "float32"))
    assert len(backbone.blocks) == 2 + 4 + 4 + 6 + 9 + 15
    assert [tuple(f.shape)[1:] for f in features.values()] == [(8, 8, 64), (4, 4, 160), (2, 2, 256)]


def test_drop_path_rate_grows_linearly_with_depth():
    backbone = EfficientNet("efficientnet-b0", drop_path_rate=0.2)
    rates = [b.drop_path_rate for b in backbone.blocks]
    assert rates[0] == 0.0
    np.testing.assert_allclose(rates[-1], 0.2 * 15 / 16)
    assert all(a < b for a, b in zip(rates, rates[1:]))


def test_builder_config_round_trip():
    layer = EfficientNet("efficientnetv2-b1", num_classes=7, drop_path_rate=0.1, dropout_rate=0.3)
    clone = EfficientNet.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
