"""Normalisation, letterbox resize and centre crop."""
import numpy as np
import pytest
import tensorflow as tf

from dataset.preprocessing import (center_crop, normalize_classification_image, normalize_detection_image,
                                   preprocess_detection_image, resize_and_pad)


def test_normalisation_constants():
    pixel = tf.constant([[[123.675, 116.28, 103.53]]])
    np.testing.assert_allclose(normalize_detection_image(pixel).numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(normalize_detection_image(tf.fill([1, 1, 3], 255.0)).numpy()[0, 0],
                               [(255 - 123.675) / 58.395, (255 - 116.28) / 57.12, (255 - 103.53) / 57.375], rtol=1e-6)
    np.testing.assert_allclose(normalize_classification_image(tf.constant([0.0, 128.0, 255.0]), "scale_128"),
                               [-1.0, 0.0, 127 / 128])
    np.testing.assert_allclose(normalize_classification_image(pixel, "imagenet_mean_std"), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="not one of"):
        normalize_classification_image(pixel, "caffe")


@pytest.mark.parametrize("shape,size,scale,content", [
    ((480, 640), (512, 512), 1.25, (384, 512)),
    ((640, 480), (512, 512), 1.25, (512, 384)),
    ((100, 100), (256, 128), 100 / 128, (128, 128)),
    ((1000, 300), (512, 512), 1000 / 512, (512, 154)),
])
def test_resize_and_pad(shape, size, scale, content):
    image = tf.ones(shape + (3,), tf.uint8)
    padded, image_scale = resize_and_pad(image, size)
    assert padded.shape == size + (3,)
    assert float(image_scale) == pytest.approx(scale, rel=1e-6)
    mask = padded.numpy()[..., 0] > 0.5
    assert mask[: content[0], : content[1]].all() and mask.sum() == content[0] * content[1]


def test_preprocess_detection_pads_with_the_mean_colour():
    image, scale = preprocess_detection_image(tf.fill([50, 100, 3], 200), 64)
    assert image.shape == (64, 64, 3) and float(scale) == pytest.approx(100 / 64)
    np.testing.assert_allclose(image[40:, :, :].numpy(), 0.0)


def test_center_crop_official_fraction():
    image = np.zeros((300, 400, 3), np.float32)
    image[:, :, 0] = np.arange(400)[None, :]  # column index
    out = center_crop(tf.constant(image), 224).numpy()
    assert out.shape == (224, 224, 3)
    crop = 224 / (224 + 32) * 300  # 262.5 px of the 300 px short side
    left = (400 - round(crop) + 1) // 2
    assert out[0, 0, 0] == pytest.approx(left, abs=1.0)
    assert out[0, -1, 0] == pytest.approx(left + crop - 1, abs=1.0)


@pytest.mark.parametrize("size,method,cropped", [
    (224, "scale_128", True),             # V2 below 320: center crop
    (384, "scale_128", False),            # V2 from 320 up: plain resize of the whole image
    (384, "imagenet_mean_std", True),     # V1 recipe: always crops
])
def test_classification_eval_follows_the_official_crop_rule(size, method, cropped):
    from dataset.preprocessing import preprocess_classification_image, uses_center_crop

    assert uses_center_crop(size, method) == cropped
    image = np.zeros((400, 400, 3), np.float32)
    image[:, :, 0] = np.arange(400)[None, :]  # column index
    out = preprocess_classification_image(tf.constant(image), size, method).numpy()
    assert out.shape == (size, size, 3)
    # Undo the normalisation of the first channel to read the source column back.
    first_column = out[0, 0, 0] * 128.0 + 128.0 if method == "scale_128" else out[0, 0, 0] * 58.395 + 123.675
    if cropped:
        left = (400 - round(size / (size + 32) * 400) + 1) // 2
        assert first_column == pytest.approx(left, abs=1.0)
    else:
        assert first_column == pytest.approx(0.0, abs=1.0)
