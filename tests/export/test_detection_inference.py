"""The EfficientDet inference wrapper: official preprocessing, original-pixel boxes."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common.config import load_config
from common.export.factory import build_inference_module
from dataset.preprocessing import MEAN_RGB, STDDEV_RGB, preprocess_detection_image
from efficientdet.inference import letterbox


def test_wrapper_gives_the_official_d0_detections(automl_fixtures):
    # Full D0 at 512: the fixture image is already 512x512, so the letterbox is the
    # identity and the wrapper must reproduce the official default (soft-NMS) output.
    fixtures = automl_fixtures / "effdet_d0"
    module = build_inference_module(load_config(model_name="efficientdet-d0"),
                                    str(fixtures / "tf1_ema_ckpt"))
    expected = np.load(fixtures / "detections.npz")
    out = {k: v.numpy() for k, v in module(np.load(fixtures / "input.npy")).items()}
    np.testing.assert_array_equal(out["num_detections"], expected["global_valid"])
    np.testing.assert_array_equal(out["detection_classes"], expected["global_classes"])
    np.testing.assert_allclose(out["detection_boxes"], expected["global_boxes"], atol=1e-2, rtol=0)
    np.testing.assert_allclose(out["detection_scores"], expected["global_scores"], atol=1e-4,
                               rtol=0)


def test_letterbox_scales_keeps_aspect_and_pads_after_normalizing(make_images):
    image = make_images(1, 100, 200)
    normalized, to_original = letterbox(image, (64, 64))
    normalized = normalized.numpy()
    assert normalized.shape == (1, 64, 64, 3)
    assert to_original.numpy() == pytest.approx(200 / 64)  # scale s = min(64/100, 64/200)
    resized = tf.image.resize(image.astype(np.float32), (32, 64)).numpy()  # int(100 * 0.32)
    expected = (resized - np.array(MEAN_RGB)) / np.array(STDDEV_RGB)
    np.testing.assert_allclose(normalized[:, :32], expected, atol=1e-5)
    assert np.all(normalized[:, 32:] == 0.0)  # zero after normalization = the mean colour
    # A same-size batch (folded into channels) equals the shared per-image function.
    batch = make_images(3, 90, 70, seed=5)
    folded, _ = letterbox(batch, (64, 64))
    for i in range(3):
        single, scale = preprocess_detection_image(batch[i], (64, 64))
        np.testing.assert_allclose(folded[i], single, atol=1e-5)
        assert scale.numpy() == pytest.approx(90 / 64)
    # Extreme aspect ratios never produce an empty resize.
    thin, _ = letterbox(np.zeros((1, 1000, 2, 3), np.uint8), (64, 64))
    assert thin.shape == (1, 64, 64, 3)


def test_boxes_come_back_in_original_pixels(d0_module, make_images, same_detections):
    # A 2x nearest-upsampled image letterboxes (bilinear, half-pixel centres) back to
    # exactly the original, so its detections are the original's times two.
    image = make_images(1, 128, 96, seed=3)
    doubled = np.repeat(np.repeat(image, 2, axis=1), 2, axis=2)
    small = {k: v.numpy() for k, v in d0_module(image).items()}
    large = {k: v.numpy() for k, v in d0_module(doubled).items()}
    assert small["num_detections"][0] > 10
    halved = dict(large, detection_boxes=large["detection_boxes"] / 2.0)
    same_detections(halved, small, box_atol=1e-3, score_atol=1e-5)
    # A 128x96 image fits the 128x128 input unscaled: boxes stay in its pixel frame.
    assert small["detection_boxes"][0, :, 0].max() <= 128.0


def test_encoded_images_of_different_sizes_match_single_uint8_calls(d0_module, make_images,
                                                                   same_detections):
    sizes = [(128, 128), (90, 160), (200, 70)]
    images = [make_images(1, h, w, seed=i)[0] for i, (h, w) in enumerate(sizes)]
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")  # lossless: same pixels back
        encoded.append(buffer.getvalue())
    batch = {k: v.numpy() for k, v in d0_module.predict_encoded(tf.constant(encoded)).items()}
    for i, image in enumerate(images):
        single = {k: v.numpy() for k, v in d0_module(image[None]).items()}
        one = {k: v[i:i + 1] for k, v in batch.items()}
        same_detections(one, single, box_atol=1e-3, score_atol=1e-5)


def test_detection_comparison_used_by_the_parity_tests_can_fail(d0_module, make_images,
                                                                same_detections):
    # The tie-tolerant comparison must still tell different detections apart.
    first = {k: v.numpy() for k, v in d0_module(make_images(1, 128, 128, seed=60)).items()}
    second = {k: v.numpy() for k, v in d0_module(make_images(1, 128, 128, seed=61)).items()}
    same_detections(first, first, box_atol=1e-3, score_atol=1e-5)
    with pytest.raises(AssertionError, match="without a match"):
        same_detections(second, first, box_atol=1e-2, score_atol=1e-5)
    shifted = dict(first, detection_boxes=first["detection_boxes"] * 1.05)
    with pytest.raises(AssertionError, match="without a match"):
        same_detections(shifted, first, box_atol=1e-2, score_atol=1e-5)
