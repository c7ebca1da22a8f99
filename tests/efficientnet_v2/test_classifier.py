"""EfficientNetV2 classifier network: exact size, mixed precision, config wiring."""
import keras
import numpy as np

from common.config import load_config
from common.model_stats import count_multiply_adds, count_parameters
from efficientnet_v2.network import build_classifier, build_classifier_from_config


def test_v2_s_exact_parameters_at_384():
    model = build_classifier("efficientnetv2-s", num_classes=1000, image_size=(384, 384))
    assert count_parameters(model) == (21_458_488, 153_872)


def test_mixed_float16_computes_in_half_and_returns_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = build_classifier("efficientnetv2-b0", num_classes=10, image_size=(64, 64))
    network = model.get_layer("efficientnetv2-b0")
    assert network.compute_dtype == "float16"
    assert network.blocks[5].depthwise.compute_dtype == "float16"
    assert network.head.dense.compute_dtype == "float32"
    # Intermediate features really are float16.
    features = network.stem(np.zeros((2, 64, 64, 3), "float32"))
    assert features.dtype == "float16"
    logits = model(np.random.RandomState(0).rand(2, 64, 64, 3).astype("float32"), training=False)
    assert logits.dtype == "float32" and tuple(logits.shape) == (2, 10)
    assert np.isfinite(np.asarray(logits)).all()


def test_build_from_config_uses_the_config():
    config = load_config(model_name="efficientnetv2-b0",
                         hparams="num_classes=7,image_size=96,dropout_rate=0.5")
    model = build_classifier_from_config(config.model)
    assert tuple(model.output.shape) == (None, 7)
    assert tuple(model.input.shape) == (None, None, None, 3)  # progressive resizing
    assert model.get_layer("efficientnetv2-b0").head.dropout.rate == 0.5


def test_training_mode_differs_from_inference_mode():
    model = build_classifier("efficientnetv2-b0", num_classes=5, image_size=(64, 64))
    x = np.random.RandomState(1).rand(4, 64, 64, 3).astype("float32")
    inference = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.asarray(model(x, training=False)), inference)
    assert not np.allclose(np.asarray(model(x, training=True)), inference)


def test_multiply_adds_of_v2_b0():
    model = build_classifier("efficientnetv2-b0", num_classes=1000, image_size=(224, 224))
    # Convolution and dense multiply-adds only (the official 730.9 M also counts
    # element-wise work); this pins our counter against silent architecture drift.
    assert count_multiply_adds(model, (224, 224)) == 718_086_176
