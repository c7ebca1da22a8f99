"""Gradient checkpointing (train.gradient_checkpointing): the recomputed layers
give the gradients and moving statistics of the plain network, drop path masks
included (they are replayed, not redrawn), and the modes pick the right layers."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from common.config import ConfigError, build_network, load_config
from common.config.schema import GRADIENT_CHECKPOINTING
from common.layers.recompute import checkpoint_groups
from common.training.setup import _apply_gradient_checkpointing

D0_SMALL = ["model.image_size=128", "model.backbone_drop_path_rate=0.3",
            "model.head_drop_path_rate=0.2"]


def _gradients_and_statistics(mode, images):
    keras.utils.set_random_seed(0)  # the same weights and drop-path seeds for every mode
    network = build_network(load_config(model_name="efficientdet-d0", overrides=D0_SMALL))
    count = checkpoint_groups(network, GRADIENT_CHECKPOINTING[mode])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            outputs = tf.nest.flatten(network(images, training=True))
            loss = 0.0
            for i, output in enumerate(outputs):  # a loss that weighs every output value
                weights = tf.sin(tf.cast(tf.range(tf.size(output)), tf.float32) * 0.37 + i)
                loss += tf.reduce_sum(output * tf.reshape(weights, tf.shape(output)))
        return tape.gradient(loss, network.trainable_variables)

    gradients = [g.numpy() for g in step()]
    statistics = {v.path: v.numpy() for v in network.non_trainable_variables
                  if "moving_" in v.path}
    return network, count, gradients, statistics


@pytest.mark.slow
def test_recomputed_layers_give_the_same_gradients_and_statistics():
    """``all`` recomputes every group (each backbone block, BiFPN cell and head, each
    wrapped on its own), so it checks the recomputation of every kind of layer;
    ``backbone`` wraps a subset of those same layers the same way and is counted."""
    images = tf.constant(np.random.default_rng(0).normal(size=(2, 128, 128, 3)), tf.float32)
    plain, _, expected, expected_statistics = _gradients_and_statistics("none", images)
    scale = max(float(np.abs(g).max()) for g in expected)
    _, count, gradients, statistics = _gradients_and_statistics("all", images)
    for e, g in zip(expected, gradients):
        # Float rounding only (recomputed convs may fuse differently); a redrawn
        # drop-path mask or a skipped gradient would differ by ~scale.
        np.testing.assert_allclose(g, e, atol=1e-5 * scale, rtol=0)
    # One moving-statistics update per step, not one more per recomputation.
    assert statistics.keys() == expected_statistics.keys()
    for path, value in statistics.items():
        np.testing.assert_allclose(value, expected_statistics[path], atol=1e-6, rtol=0)
    # D0: 16 blocks, 3 cells, 2 heads ("none"'s network is done with: wrap it to count).
    counts = {"all": count,
              "backbone": checkpoint_groups(plain, GRADIENT_CHECKPOINTING["backbone"])}
    assert counts == {"backbone": 16, "all": 16 + 3 + 2}


def test_modes_name_existing_layers():
    config = load_config(model_name="efficientnetv2-b0",
                         overrides=["model.image_size=32", "train.gradient_checkpointing=bifpn"])
    with pytest.raises(ConfigError, match=r"gradient_checkpointing=bifpn: efficientnetv2-b0 "
                                          r"has no such layers; use one of \['none', "
                                          r"'backbone', 'all'\]"):
        _apply_gradient_checkpointing(build_network(config), config)
    with pytest.raises(ConfigError, match="gradient_checkpointing 'blocks' is not one of"):
        load_config(model_name="efficientnetv2-b0",
                    overrides=["train.gradient_checkpointing=blocks"])


def test_checkpointed_layers_run_unchanged_outside_training():
    keras.utils.set_random_seed(0)
    config = load_config(model_name="efficientnetv2-b0", overrides=["model.image_size=32"])
    network = build_network(config)
    images = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(network(images, training=False))
    assert checkpoint_groups(network, GRADIENT_CHECKPOINTING["all"]) == 21  # V2-B0 blocks
    assert checkpoint_groups(network, GRADIENT_CHECKPOINTING["all"]) == 21  # idempotent
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(network(images, training=False)),
                                  expected)
