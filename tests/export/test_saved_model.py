"""SavedModel export: signatures, dynamic batch, any image size, parity with Keras.

Tolerances: raw outputs 1e-5 absolute (the same float32 graph, only reloaded);
detections compared up to the order of near-tied scores with boxes within
1e-3 px and scores within 1e-5.
"""
import io
import os

import numpy as np
import pytest
from PIL import Image

from common.export.predictors import KerasPredictor, SavedModelPredictor


def _png(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_d0_saved_model_matches_keras_for_batch_1_and_3(d0_module, d0_saved_model, make_images,
                                                         same_detections):
    assert os.path.isfile(os.path.join(d0_saved_model, "config.yaml"))
    keras_model, saved = KerasPredictor(d0_module), SavedModelPredictor(d0_saved_model)
    assert saved.task == "detection" and saved.image_size == (128, 128)
    assert set(saved.loaded.signatures) == {"serving_default", "serve_encoded", "raw_outputs"}
    for batch, (height, width) in ((1, (128, 128)), (3, (150, 100))):  # dynamic batch and size
        images = make_images(batch, height, width, seed=batch)
        expected, actual = keras_model(images), saved(images)
        assert actual["detection_boxes"].shape == (batch, 100, 4)
        assert actual["detection_classes"].dtype == np.int32
        same_detections(actual, expected, box_atol=1e-3, score_atol=1e-5)
    normalized = np.random.default_rng(0).standard_normal((2, 128, 128, 3)).astype(np.float32)
    raw_expected, raw_actual = keras_model.raw(normalized), saved.raw(normalized)
    assert sorted(raw_actual) == sorted(raw_expected) and len(raw_actual) == 10
    for key in raw_expected:
        np.testing.assert_allclose(raw_actual[key], raw_expected[key], atol=1e-5, rtol=0,
                                   err_msg=key)


def test_d0_saved_model_encoded_batch_of_different_sizes(d0_module, d0_saved_model, make_images,
                                                         same_detections):
    saved = SavedModelPredictor(d0_saved_model)
    images = [make_images(1, h, w, seed=i)[0] for i, (h, w) in
              enumerate(((128, 128), (64, 200), (300, 90)))]
    for count in (1, 3):
        out = saved.predict_encoded([_png(image) for image in images[:count]])
        assert out["detection_boxes"].shape == (count, 100, 4)
        for i in range(count):
            expected = {k: v.numpy() for k, v in d0_module(images[i][None]).items()}
            same_detections({k: v[i:i + 1] for k, v in out.items()}, expected, box_atol=1e-3,
                            score_atol=1e-5)


def test_v2_saved_model_matches_keras(v2_module, v2_saved_model, make_images):
    keras_model, saved = KerasPredictor(v2_module), SavedModelPredictor(v2_saved_model)
    assert saved.task == "classification"
    for batch in (1, 3):
        images = make_images(batch, 120, 150, seed=batch)
        expected, actual = keras_model(images), saved(images)
        np.testing.assert_allclose(actual["logits"], expected["logits"], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(actual["top_k_classes"], expected["top_k_classes"])
    encoded = saved.predict_encoded([_png(make_images(1, 80, 140, seed=9)[0])])
    expected = keras_model(make_images(1, 80, 140, seed=9))
    np.testing.assert_allclose(encoded["logits"], expected["logits"], atol=1e-5, rtol=0)


def test_missing_saved_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No SavedModel in .*--runmode saved_model"):
        SavedModelPredictor(str(tmp_path))
