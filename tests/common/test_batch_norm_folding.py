"""Batch norm folded into the convolutions: the folded network computes what the
unfolded one does (random, non-trivial statistics so that a wrong fold shows),
every batch norm is folded, and a folded network refuses to train."""
import keras
import numpy as np
import pytest

from common.config import build_network, load_config
from common.layers.batch_norm_folding import fold_batch_norms
from common.layers.normalization import BatchNorm, batch_norm


def _batch_norms(network):
    return [layer for layer in network._flatten_layers() if isinstance(layer, BatchNorm)]


def _randomize_statistics(network, seed=0):
    """Gamma, beta and moving statistics far from their 1 / 0 initial values."""
    rng = np.random.default_rng(seed)
    for bn in _batch_norms(network):
        channels = bn.gamma.shape[0]
        bn.gamma.assign(rng.uniform(0.5, 1.5, channels))
        bn.beta.assign(rng.normal(0.0, 0.3, channels))
        bn.moving_mean.assign(rng.normal(0.0, 0.3, channels))
        bn.moving_variance.assign(rng.uniform(0.5, 2.0, channels))


def _outputs(network, images):
    return [keras.ops.convert_to_numpy(t)
            for t in keras.tree.flatten(network(images, training=False))]


def _check_fold(model_name, size, overrides=()):
    config = load_config(model_name=model_name,
                         overrides=[f"model.image_size={size}", *overrides])
    network = build_network(config)
    images = np.random.default_rng(1).normal(size=(2, size, size, 3)).astype("float32")
    network(images)
    _randomize_statistics(network)
    expected = _outputs(network, images)
    folded = fold_batch_norms(network)
    assert folded == len(_batch_norms(network))
    assert all(bn.folded for bn in _batch_norms(network))
    got = _outputs(network, images)
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        scale = max(1.0, float(np.abs(e).max()))
        np.testing.assert_allclose(g, e, atol=1e-4 * scale, rtol=0)
    return network, images


@pytest.mark.parametrize("model_name,size,overrides", [
    ("efficientdet-d0", 128, ()),
    # Plain 3×3 convs everywhere (heads included) and the conv → BN → act BiFPN order.
    ("efficientdet-d0", 128, ("model.separable_conv=false", "model.conv_bn_act_pattern=true")),
    ("efficientnetv2-b0", 64, ()),  # Fused-MBConv, MBConv with SE, classifier head
])
def test_folded_network_computes_the_same_raw_outputs(model_name, size, overrides):
    _check_fold(model_name, size, overrides)


def test_folded_network_refuses_training():
    network, images = _check_fold("efficientnetv2-b0", 32)
    with pytest.raises(ValueError, match="folded"):
        network(images, training=True)


def test_folded_heads_refuse_training():
    network, _ = _check_fold("efficientdet-d0", 128)
    head = network.get_layer("box_net")
    features = [np.zeros((1, 128 // 2**level, 128 // 2**level, 64), "float32")
                for level in range(3, 8)]
    assert len(head(features, training=False)) == 5
    with pytest.raises(ValueError, match="box_net has its batch norms folded"):
        head(features, training=True)


def test_a_batch_norm_without_a_conv_is_reported():
    inputs = keras.Input((4, 4, 3))
    outputs = batch_norm("lonely_bn")(keras.layers.ReLU()(inputs))
    with pytest.raises(ValueError, match="lonely_bn"):
        fold_batch_norms(keras.Model(inputs, outputs))
