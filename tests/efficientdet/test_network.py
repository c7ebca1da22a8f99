"""Tests of the pure EfficientDet network: structure, official names, counts, precision."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientdet.bifpn import FNode, OpAfterCombine, bifpn_nodes, upsample_nearest_2x
from efficientdet.model_configs import get_detector_params, list_detector_names
from efficientdet.builder import build_efficientdet

# Our Keras DepthwiseConv2D calls its weight ``kernel``; the official one ``depthwise_kernel``.
_RENAMES = (("depthwise_conv2d/kernel", "depthwise_conv2d/depthwise_kernel"),)


def _official_path(path):
    for ours, theirs in _RENAMES:
        path = path.replace(ours, theirs)
    return path


def _count(weights):
    return sum(int(np.prod(v.shape)) for v in weights)


@pytest.fixture(scope="module")
def d0():
    return build_efficientdet("efficientdet-d0", num_classes=90)


def test_d0_parameter_counts_are_official(d0):
    assert _count(d0.trainable_weights) == 3_880_067
    assert _count(d0.non_trainable_weights) == 47_136


def test_d0_weight_paths_and_shapes_match_official_keras_model(d0, automl_fixtures,
                                                                  read_weight_list):
    # automl_fixtures (tests/conftest.py) skips with the reason when ../shared is absent.
    official = read_weight_list(automl_fixtures / "effdet_d0" / "keras_weights.txt",
                                with_trainable=True)
    ours = {}
    for v in d0.weights:
        path = _official_path(v.path)
        assert path not in ours, f"duplicate weight path {path}"
        ours[path] = (tuple(v.shape), bool(v.trainable))
    assert len(official) == 709
    assert sorted(set(official) - set(ours)) == []
    assert sorted(set(ours) - set(official)) == []
    mismatched = {k: (ours[k], official[k]) for k in official if ours[k] != official[k]}
    assert mismatched == {}


def test_non_square_output_shapes_and_layout():
    num_classes = 3
    model = build_efficientdet("efficientdet-d0", num_classes=num_classes, image_size=(256, 384))
    outputs = model(np.zeros((2, 256, 384, 3), np.float32), training=False)
    assert set(outputs) == {"class_outputs", "box_outputs"}
    assert len(outputs["class_outputs"]) == len(outputs["box_outputs"]) == 5
    for i, level in enumerate(range(3, 8)):
        h, w = 256 // 2**level, 384 // 2**level
        assert tuple(outputs["class_outputs"][i].shape) == (2, h, w, 9 * num_classes)
        assert tuple(outputs["box_outputs"][i].shape) == (2, h, w, 9 * 4)
    # Focal-loss prior: sigmoid(class bias) = 0.01.
    bias = model.get_layer("class_net").predict.bias.numpy()
    np.testing.assert_allclose(bias, -np.log(99.0), rtol=1e-6)
    assert np.all(model.get_layer("box_net").predict.bias.numpy() == 0)


def test_odd_image_size_gives_ceil_feature_sizes():
    model = build_efficientdet("efficientdet-d0", num_classes=2, image_size=(200, 328))
    outputs = model(np.zeros((1, 200, 328, 3), np.float32), training=False)
    sizes = [tuple(o.shape[1:3]) for o in outputs["class_outputs"]]
    assert sizes == [(25, 41), (13, 21), (7, 11), (4, 6), (2, 3)]


# Paper Table 2 parameter counts (millions) at 90 classes.
_PAPER_PARAMS_M = {
    "efficientdet-d1": 6.6,
    "efficientdet-d2": 8.1,
    "efficientdet-d3": 12.0,
    "efficientdet-d4": 20.7,
    "efficientdet-d5": 33.7,
    "efficientdet-d6": 51.9,
    "efficientdet-d7": 51.9,
    "efficientdet-d7x": 77.0,
}
_SLOW_BUILDS = {"efficientdet-d3", "efficientdet-d4", "efficientdet-d5", "efficientdet-d6",
                "efficientdet-d7", "efficientdet-d7x"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_BUILDS else n
        for n in _PAPER_PARAMS_M
    ],
)
def test_larger_detectors_match_paper_parameter_counts(name):
    # Parameter counts do not depend on the image size; a small one builds faster.
    params = get_detector_params(name)
    model = build_efficientdet(name, num_classes=90, image_size=2 ** params["max_level"])
    trainable = _count(model.trainable_weights)
    assert abs(trainable / 1e6 - _PAPER_PARAMS_M[name]) <= 0.01 * _PAPER_PARAMS_M[name]
    num_levels = params["max_level"] - params["min_level"] + 1
    assert len(model.output["class_outputs"]) == num_levels
    keras.backend.clear_session()


def test_mixed_float16_outputs_are_float32():
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_float16")
        model = build_efficientdet("efficientdet-d0", num_classes=2, image_size=128)
        assert model.get_layer("fpn_cells").compute_dtype == "float16"
        outputs = model(np.random.RandomState(0).normal(size=(1, 128, 128, 3)), training=False)
        for tensor in outputs["class_outputs"] + outputs["box_outputs"]:
            assert keras.backend.standardize_dtype(tensor.dtype) == "float32"
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(tensor)))
    finally:
        keras.config.set_dtype_policy(previous)


def test_upsample_2x_equals_nearest_repeat_and_compiles_with_xla():
    x = np.random.RandomState(0).normal(size=(2, 3, 5, 4)).astype(np.float32)
    expected = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(upsample_nearest_2x(x)), expected)

    # The train step must compile on CPU: the gradient has to be XLA-friendly
    # (tf.image.resize's nearest-neighbour gradient has no XLA CPU kernel).
    weights = np.random.RandomState(1).normal(size=(2, 6, 10, 4)).astype(np.float32)

    @tf.function(jit_compile=True)
    def grad(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            loss = tf.reduce_sum(upsample_nearest_2x(v) * weights)
        return tape.gradient(loss, v)

    expected_grad = weights.reshape(2, 3, 2, 5, 2, 4).sum(axis=(2, 4))
    np.testing.assert_allclose(grad(tf.constant(x)).numpy(), expected_grad, rtol=1e-5, atol=1e-5)


def test_bifpn_graph_is_the_official_p3_p7_graph():
    assert bifpn_nodes(3, 7) == [
        (6, (3, 4)),
        (5, (2, 5)),
        (4, (1, 6)),
        (3, (0, 7)),
        (4, (1, 7, 8)),
        (5, (2, 6, 9)),
        (6, (3, 5, 10)),
        (7, (4, 11)),
    ]
    assert len(bifpn_nodes(3, 8)) == 10


def _fusion_node(method):
    node = FNode(3, (0, 1), node_id=2, node_levels=(3, 3), min_level=3, filters=4,
                 weight_method=method, name="fnode0")
    node.build([(None, 2, 2, 4), (None, 2, 2, 4)])
    return node


@pytest.mark.parametrize("method", ["fastattn", "attn", "sum"])
def test_fusion_methods(method):
    rng = np.random.RandomState(0)
    a, b = (rng.normal(size=(1, 2, 2, 4)).astype(np.float32) for _ in range(2))
    node = _fusion_node(method)
    raw = np.array([2.0, -1.0], np.float32)
    for var, value in zip(node.fusion_weights, raw):
        var.assign(value)
    fused = keras.ops.convert_to_numpy(node._fuse([a, b]))
    if method == "fastattn":
        w = np.maximum(raw, 0)
        expected = a * w[0] / (w.sum() + 1e-4) + b * w[1] / (w.sum() + 1e-4)
        assert [v.path for v in node.fusion_weights] == ["fnode0/WSM", "fnode0/WSM_1"]
    elif method == "attn":
        w = np.exp(raw) / np.exp(raw).sum()
        expected = a * w[0] + b * w[1]
    else:
        expected = a + b
        assert node.fusion_weights == []
    np.testing.assert_allclose(fused, expected, rtol=1e-6, atol=1e-6)


def test_op_after_combine_applies_swish_before_the_conv():
    layer = OpAfterCombine(4, name="op_after_combine5")
    x = np.random.RandomState(0).normal(size=(1, 3, 3, 4)).astype(np.float32)
    layer.build(x.shape)
    layer.bn.moving_mean.assign(np.full(4, 0.3, np.float32))
    layer.bn.moving_variance.assign(np.full(4, 2.0, np.float32))
    expected = layer.bn(layer.conv(keras.activations.silu(x)), training=False)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x, training=False)),
        keras.ops.convert_to_numpy(expected),
        rtol=1e-6,
    )


def test_param_table_and_errors():
    assert list_detector_names()[0] == "efficientdet-d0"
    assert len(list_detector_names()) == 15  # D0-D7, D7x, Lite0-4, Lite3x
    d0 = get_detector_params("efficientdet-d0")
    assert (d0["image_size"], d0["fpn_num_filters"], d0["fpn_cell_repeats"]) == ((512, 512), 64, 3)
    assert d0["fpn_weight_method"] == "fastattn"
    d7x = get_detector_params("efficientdet-d7x")
    assert (d7x["backbone_name"], d7x["max_level"], d7x["fpn_weight_method"]) == (
        "efficientnet-b7", 8, "sum")
    assert get_detector_params("efficientdet-d7")["anchor_scale"] == 5.0
    d0["fpn_num_filters"] = 1
    assert get_detector_params("efficientdet-d0")["fpn_num_filters"] == 64
    with pytest.raises(ValueError, match="efficientdet-d7x"):
        get_detector_params("efficientdet-d9")
    with pytest.raises(ValueError, match="fpn_num_filterz"):
        build_efficientdet("efficientdet-d0", fpn_num_filterz=3)
    with pytest.raises(ValueError, match="image_size"):
        build_efficientdet("efficientdet-d0", image_size="640x320")
