"""The NumPy twins of the inference preprocessing match the TensorFlow originals."""
import os
import subprocess
import sys

import numpy as np
import pytest

import dataset.numpy_preprocessing as npp
from dataset.normalizations import NORMALIZATIONS
from dataset.numpy_preprocessing import classification_preprocess_numpy, letterbox_numpy

ATOL = 1e-4  # measured: 0.0 (bit-identical float32) on the cases below


def _tf_letterbox(images, size, normalization):
    from efficientdet.inference import letterbox

    normalized, scale = letterbox(images, size, normalization)
    return normalized.numpy(), float(scale)


def _tf_classification(images, size, normalization, crop):
    from efficientnet_v2.inference import classification_preprocess

    return classification_preprocess(images, size, normalization, crop).numpy()


def _images(shape, batch, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    full = ((batch,) if batch else ()) + tuple(shape) + (3,)
    if dtype == np.uint8:
        return rng.integers(0, 256, full, dtype=np.uint8)
    return (rng.random(full) * 255).astype(dtype)


def test_crop_rule_is_the_official_one():
    """V2 (scale_128) crops below 320 px on the shorter side; V1 and Lite always crop."""
    assert npp.uses_center_crop(319, "scale_128") and npp.uses_center_crop((400, 300), "scale_128")
    assert not npp.uses_center_crop(320, "scale_128") and not npp.uses_center_crop(384, "scale_128")
    for method in ("imagenet_mean_std", "scale_127"):
        assert npp.uses_center_crop(384, method) and npp.uses_center_crop(224, method)


@pytest.mark.parametrize("shape,size", [
    ((333, 517), (512, 512)),   # downscale, wide
    ((97, 41), (128, 128)),     # upscale, tall
    ((640, 480), (320, 320)),   # downscale, tall
    ((1, 1), (128, 128)),       # single pixel
    ((512, 512), (512, 512)),   # already at the network size: no resize
    ((384, 640), (384, 640)),   # non-square, already at the network size
    ((333, 517), (384, 640)),   # non-square network, height limits
    ((517, 333), (384, 640)),
    ((200, 900), (640, 384)),   # width limits
])
@pytest.mark.parametrize("batch", [None, 3])
def test_letterbox_matches_tensorflow(shape, size, batch):
    images = _images(shape, batch, seed=shape[0] * 7 + shape[1])
    for normalization in NORMALIZATIONS:
        expected, expected_scale = _tf_letterbox(images, size, normalization)
        got, scale = letterbox_numpy(images, size, normalization)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert isinstance(scale, np.float32) and float(scale) == expected_scale
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_letterbox_other_dtypes(dtype):
    images = _images((75, 130), 2, seed=5, dtype=dtype)
    expected, expected_scale = _tf_letterbox(images, (96, 96), "imagenet_mean_std")
    got, scale = letterbox_numpy(images, 96, "imagenet_mean_std")
    assert float(scale) == expected_scale
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_letterbox_pads_with_the_mean_colour_and_rounds_half_to_even():
    # 50 x 100 -> 64: scale 0.64, content 32 x 64, padding below normalised to 0.
    got, scale = letterbox_numpy(np.full((50, 100, 3), 200, np.uint8), 64)
    assert got.shape == (64, 64, 3) and float(scale) == pytest.approx(100 / 64)
    np.testing.assert_array_equal(got[32:], 0.0)
    assert (got[:32] > 0).all()
    # 5 x 8 -> 4: 5 * 0.5 = 2.5 rounds to 2 (tf.round is half to even).
    got, _ = letterbox_numpy(np.full((5, 8, 3), 255, np.uint8), 4, "scale_128")
    assert (got[:2, :, 0] > 0).all() and (got[2:] == 0).all()
    expected, _ = _tf_letterbox(np.full((5, 8, 3), 255, np.uint8), 4, "scale_128")
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape", [(333, 517), (97, 41), (500, 375), (224, 224), (1, 1)])
@pytest.mark.parametrize("size", [224, (240, 300), 384, (384, 320)])  # below and above NO_CROP_FROM
@pytest.mark.parametrize("batch", [None, 3])
def test_classification_matches_tensorflow(shape, size, batch):
    images = _images(shape, batch, seed=shape[0] + 3 * shape[1])
    for normalization in ("scale_128", "imagenet_mean_std", "scale_127"):  # V2, V1, Lite
        expected = _tf_classification(images, size, normalization, None)
        got = classification_preprocess_numpy(images, size, normalization)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("crop", [True, False])
def test_classification_forced_crop(crop):
    images = _images((300, 451), 2, seed=9)
    for size in (224, 384):
        expected = _tf_classification(images, size, "scale_128", crop)
        got = classification_preprocess_numpy(images, size, "scale_128", crop)
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_bad_arguments():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="not one of"):
        letterbox_numpy(image, 16, "caffe")
    with pytest.raises(ValueError, match="must be one of"):
        classification_preprocess_numpy(image, 16, "caffe")
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        letterbox_numpy(np.zeros((8, 8), np.uint8), 16)


def test_import_does_not_load_tensorflow():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = ("import sys, dataset.numpy_preprocessing as m; "
            "m.letterbox_numpy(m.np.zeros((4, 6, 3), m.np.uint8), 8); "
            "m.classification_preprocess_numpy(m.np.zeros((4, 6, 3), m.np.uint8), 8); "
            "sys.exit(int('tensorflow' in sys.modules))")
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr or "tensorflow was imported"
