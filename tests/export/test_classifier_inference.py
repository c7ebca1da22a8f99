"""The EfficientNet(V2) inference wrapper: official eval crop / resize / normalization."""
import numpy as np
import pytest
import tensorflow as tf

from common.config import load_config
from common.export.factory import build_inference_module
from dataset.preprocessing import preprocess_classification_image
from efficientnet_v2.inference import (
    ClassifierInference,
    classification_preprocess,
    uses_center_crop,
)


def test_official_crop_rule():
    assert uses_center_crop((224, 224), "scale_128")
    assert not uses_center_crop((384, 384), "scale_128")  # V2 eval: no crop from 320 up
    assert uses_center_crop((384, 384), "imagenet_mean_std")  # V1 recipe always crops


def test_batch_preprocessing_is_the_shared_single_image_one(make_images):
    # A same-size batch goes through dataset.preprocessing in one pass (batch folded
    # into channels); it must equal the per-image shared function.
    images = make_images(3, 150, 200)
    batch = classification_preprocess(images, (96, 96), "scale_128").numpy()
    for i in range(3):
        single = preprocess_classification_image(images[i], (96, 96), "scale_128").numpy()
        np.testing.assert_allclose(batch[i], single, atol=1e-5)
    # The crop keeps the centre: a crop of a crop-sized centre patch changes nothing
    # but the border, so a constant-centre image stays constant after preprocessing.
    centre = np.zeros((1, 150, 200, 3), np.uint8)
    centre[:, 10:140, 40:160] = 200
    np.testing.assert_allclose(classification_preprocess(centre, (96, 96)), (200 - 128) / 128)
    # At 320 and above the official V2 evaluation only resizes.
    big = classification_preprocess(images, (320, 320), "scale_128").numpy()
    expected = (tf.image.resize(images.astype(np.float32), (320, 320)).numpy() - 128) / 128
    np.testing.assert_allclose(big, expected, atol=1e-5)
    with pytest.raises(ValueError, match="scale_128"):
        classification_preprocess(images, (96, 96), "bgr")


def test_wrapper_gives_the_official_b0_logits(automl_fixtures):
    fixtures = automl_fixtures / "effnetv2_b0"
    config = load_config(model_name="efficientnetv2-b0", hparams="image_size=224")
    module = build_inference_module(config, str(fixtures / "tf1_ema_ckpt"))
    module.center_crop = False  # the fixture input is already the 224x224 network input
    expected = np.load(fixtures / "outputs.npz")
    out = module(np.load(fixtures / "input.npy"))
    np.testing.assert_allclose(out["logits"].numpy(), expected["logits_pre128"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected["softmax_pre128"], atol=1e-5)
    top = out["top_k_classes"].numpy()[0]
    np.testing.assert_array_equal(top, np.argsort(-expected["logits_pre128"][0])[:5])
    np.testing.assert_allclose(out["top_k_probabilities"].numpy()[0],
                               np.sort(expected["softmax_pre128"][0])[::-1][:5], atol=1e-5)


def test_top_k_is_capped_by_the_number_of_classes():
    from efficientnet_v2.network import build_classifier

    network = build_classifier("efficientnetv2-b0", num_classes=3, image_size=(32, 32))
    module = ClassifierInference(network, (32, 32), top_k=5)
    out = module(np.zeros((2, 40, 50, 3), np.uint8))
    assert out["top_k_classes"].shape == (2, 3) and out["logits"].shape == (2, 3)


@pytest.mark.slow
def test_efficientnetv2_s_keras_saved_model_and_tflite_agree(tmp_path, make_images):
    """EfficientNetV2-S itself (the V2-B0 tests cover the shared blocks with official
    weights): the wrapper, its reloaded SavedModel and its fp32 TFLite file give the
    same outputs. 128x128 (weights do not depend on the size), seeded random weights
    with randomized batch-norm statistics so that every block matters.
    Tolerances: logits 2e-4 x the largest |logit| (float32 kernels sum in other
    orders; measured: SavedModel 0, TFLite 1.35e-4 x), probabilities 1e-4
    (measured 2.7e-5), identical top-5."""
    import keras

    from common.export import tflite
    from common.export.predictors import KerasPredictor, SavedModelPredictor, TFLitePredictor
    from common.export.saved_model import export_saved_model
    from common.layers.batch_norm_folding import fold_batch_norms

    keras.utils.set_random_seed(0)
    config = load_config(model_name="efficientnetv2-s", hparams="image_size=128")
    module = build_inference_module(config, fold_batch_norm=False)
    rng = np.random.default_rng(0)
    for variable in module.network.weights:
        if "moving_mean" in variable.path:
            variable.assign(rng.normal(0, 0.1, variable.shape).astype(np.float32))
        elif "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
    fold_batch_norms(module.network)  # what build_inference_module does by default
    images = make_images(2, 150, 170, seed=3)  # any size: the wrapper crops and resizes
    expected = KerasPredictor(module)(images)
    scale = float(np.abs(expected["logits"]).max())
    assert scale > 1.0  # informative (default BN statistics give ~0.1; these ~600)

    export_saved_model(module, str(tmp_path / "sm"), config)
    reloaded = SavedModelPredictor(str(tmp_path / "sm"))(images)
    network_size = make_images(2, 128, 128, seed=4)  # TFLite takes network-size images
    expected_lite = KerasPredictor(module)(network_size)
    lite = TFLitePredictor(tflite.convert_to_tflite(module, "none"))(network_size)

    atol = 2e-4 * max(1.0, scale)
    for actual, reference in ((reloaded, expected), (lite, expected_lite)):
        diff = np.abs(actual["logits"] - reference["logits"]).max()
        print(f"V2-S logits scale {scale:.3f}, max |diff| {diff:.2e}")
        np.testing.assert_allclose(actual["logits"], reference["logits"], atol=atol, rtol=0)
        np.testing.assert_allclose(actual["probabilities"], reference["probabilities"],
                                   atol=1e-4, rtol=0)
        np.testing.assert_array_equal(actual["top_k_classes"], reference["top_k_classes"])
