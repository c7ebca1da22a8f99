"""Shared layers: shapes, official sub-layer names, serialization, mixed precision."""
import keras
import numpy as np
import pytest

from common.layers import (
    ClassificationHead,
    ConvBnAct,
    DropPath,
    FusedMBConv,
    MBConv,
    SqueezeExcite,
    batch_norm,
    get_activation,
)

LAYER_CASES = [
    (lambda: ConvBnAct(16, 3, 2, name="stem"), (2, 16, 16, 3), (2, 8, 8, 16)),
    (lambda: SqueezeExcite(4, name="se"), (2, 8, 8, 16), (2, 8, 8, 16)),
    (lambda: MBConv(16, 24, kernel_size=5, strides=2, expand_ratio=6, se_ratio=0.25,
                    name="blocks_1"), (2, 16, 16, 16), (2, 8, 8, 24)),
    (lambda: MBConv(16, 16, expand_ratio=1, se_ratio=0.25, drop_path_rate=0.1,
                    name="blocks_0"), (2, 8, 8, 16), (2, 8, 8, 16)),
    (lambda: FusedMBConv(16, 32, strides=2, expand_ratio=4, name="blocks_2"),
     (2, 16, 16, 16), (2, 8, 8, 32)),
    (lambda: FusedMBConv(16, 16, expand_ratio=1, drop_path_rate=0.1, name="blocks_3"),
     (2, 8, 8, 16), (2, 8, 8, 16)),
    (lambda: ClassificationHead(10, feature_size=32, name="head"), (2, 4, 4, 16), (2, 10)),
]


def _weight_paths(layer):
    return sorted(v.path for v in layer.weights)


@pytest.mark.parametrize("make,in_shape,out_shape", LAYER_CASES)
def test_shapes_and_config_round_trip(make, in_shape, out_shape):
    layer = make()
    x = np.random.RandomState(0).randn(*in_shape).astype("float32")
    y = layer(x, training=False)
    assert tuple(y.shape) == out_shape
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(x, training=False)
    assert [v.shape for v in clone.weights] == [v.shape for v in layer.weights]
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x, training=False), y, atol=1e-5)


@pytest.mark.parametrize("make,in_shape,out_shape", LAYER_CASES)
def test_mixed_float16(make, in_shape, out_shape):
    keras.mixed_precision.set_global_policy("mixed_float16")
    layer = make()
    y = layer(np.ones(in_shape, "float32"), training=True)
    if isinstance(layer, ClassificationHead):
        assert y.dtype == "float32", "logits must stay float32 under mixed_float16"
    else:
        assert y.dtype == "float16"
    assert all(v.dtype == "float32" for v in layer.weights), "variables stay float32"


def test_mbconv_official_sublayer_names():
    block = MBConv(16, 24, kernel_size=3, strides=2, expand_ratio=6, se_ratio=0.25, name="blocks_1")
    block(np.zeros((1, 8, 8, 16), "float32"))
    paths = _weight_paths(block)
    assert "blocks_1/conv2d/kernel" in paths  # expansion
    assert "blocks_1/conv2d_1/kernel" in paths  # projection
    assert "blocks_1/depthwise_conv2d/kernel" in paths
    assert "blocks_1/se/conv2d/bias" in paths and "blocks_1/se/conv2d_1/kernel" in paths
    assert "blocks_1/tpu_batch_normalization_2/moving_variance" in paths
    # SE bottleneck is computed from the block input (16 * 0.25), not the expansion.
    se_kernel = {v.path: v for v in block.weights}["blocks_1/se/conv2d/kernel"]
    assert tuple(se_kernel.shape) == (1, 1, 96, 4)


def test_fused_mbconv_without_expansion_is_one_conv():
    block = FusedMBConv(16, 32, kernel_size=3, strides=1, expand_ratio=1, name="blocks_0")
    block(np.zeros((1, 8, 8, 16), "float32"))
    shapes = {v.path: tuple(v.shape) for v in block.weights}
    assert shapes["blocks_0/conv2d/kernel"] == (3, 3, 16, 32)
    assert not any("conv2d_1" in p for p in shapes)


def test_residual_only_when_shapes_match():
    assert MBConv(16, 16, strides=1).has_residual
    assert not MBConv(16, 16, strides=2).has_residual
    assert not MBConv(16, 24, strides=1).has_residual
    assert not MBConv(16, 16, strides=1, id_skip=False).has_residual


def test_drop_path_statistics():
    layer = DropPath(0.25, seed=1)
    x = np.ones((4000, 2, 2, 1), "float32")
    y = np.asarray(layer(x, training=True))
    per_sample = y[:, 0, 0, 0]
    kept = per_sample > 0
    np.testing.assert_allclose(per_sample[kept], 1 / 0.75, rtol=1e-6)
    assert (per_sample[~kept] == 0).all()
    assert abs(kept.mean() - 0.75) < 0.03
    assert (y == y[:, :1, :1, :]).all(), "one decision per sample"
    np.testing.assert_array_equal(layer(x, training=False), x)
    with pytest.raises(ValueError, match="rate"):
        DropPath(1.0)


def test_batch_norm_factory_and_activation_errors():
    plain = batch_norm("bn", momentum=0.9, epsilon=1e-3)
    sync = batch_norm("bn", synchronized=True)
    assert plain.momentum == 0.9 and not plain.synchronized
    assert sync.synchronized
    with pytest.raises(ValueError, match="Unknown activation 'swsh'"):
        get_activation("swsh")
