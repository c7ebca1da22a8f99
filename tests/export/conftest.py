"""Shared, cached models for the export tests.

The detector is D0 at 128×128 with the 90-class official fixture checkpoint
(weights do not depend on the input size), the classifier EfficientNetV2-B0 at
96×96 with its fixture checkpoint: real, informative weights at a size a CPU
runs quickly. Building and exporting is slow, so each object is made once per
session (``automl_fixtures`` itself is function-scoped: it skips with the
reason when the fixtures are absent).
"""
import numpy as np
import pytest

from common.config import load_config

_CACHE = {}
D0_SIZE = 128
V2_SIZE = 96


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def d0_config(**hparams):
    items = {"image_size": D0_SIZE, **hparams}
    return load_config(model_name="efficientdet-d0",
                       hparams=",".join(f"{k}={v}" for k, v in items.items()))


def v2_config():
    return load_config(model_name="efficientnetv2-b0", hparams=f"image_size={V2_SIZE}")


@pytest.fixture
def d0_checkpoint(automl_fixtures):
    return str(automl_fixtures / "effdet_d0" / "tf1_ema_ckpt")


@pytest.fixture
def v2_checkpoint(automl_fixtures):
    return str(automl_fixtures / "effnetv2_b0" / "tf1_ema_ckpt")


@pytest.fixture
def d0_module(d0_checkpoint):
    """DetectionInference around D0 (128×128, fixture weights, official soft-NMS)."""
    from common.export.factory import build_inference_module

    return _cached("d0", lambda: build_inference_module(d0_config(), d0_checkpoint))


@pytest.fixture
def v2_module(v2_checkpoint):
    """ClassifierInference around EfficientNetV2-B0 (96×96, fixture weights)."""
    from common.export.factory import build_inference_module

    return _cached("v2", lambda: build_inference_module(v2_config(), v2_checkpoint))


@pytest.fixture
def d0_saved_model(d0_module, tmp_path_factory):
    from common.export.saved_model import export_saved_model

    return _cached("d0_sm", lambda: export_saved_model(
        d0_module, str(tmp_path_factory.mktemp("d0_saved_model")), d0_config()))


@pytest.fixture
def v2_saved_model(v2_module, tmp_path_factory):
    from common.export.saved_model import export_saved_model

    return _cached("v2_sm", lambda: export_saved_model(
        v2_module, str(tmp_path_factory.mktemp("v2_saved_model")), v2_config()))


@pytest.fixture
def make_images():
    """:func:`random_images` (test modules cannot import conftest in importlib mode)."""
    return random_images


@pytest.fixture
def same_detections():
    """:func:`assert_same_detections`."""
    return assert_same_detections


def random_images(batch, height, width, seed=0):
    """Uniform uint8 noise: the distribution the fixture weights' batch-norm statistics
    were calibrated on, so outputs stay informative (structured images saturate them)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


def assert_same_detections(actual, expected, box_atol, score_atol, min_fraction=0.8, strict_top=20):
    """Detections equal up to the order of (near-)tied scores.

    A valid expected detection matches a distinct ``actual`` row with the same
    class, score within ``score_atol`` and every box coordinate within
    ``box_atol`` pixels. With random fixture weights the ~100 scores of an image
    lie within ~0.01 of each other, so two overlapping boxes can be tied to
    1e-7; float noise between formats (other kernels, batch sizes) then flips
    which one NMS keeps, and soft-NMS carries that on to later rows (observed:
    up to 11 of 100 rows, all below rank 70). So the ``strict_top`` best
    detections must all match, at least ``min_fraction`` of all of them, and the
    counts must be equal. A wrong scale, preprocessing or NMS variant matches
    almost nothing.
    """
    np.testing.assert_array_equal(actual["num_detections"], expected["num_detections"])
    for b, count in enumerate(np.asarray(expected["num_detections"])):
        free, unmatched = set(range(int(count))), []
        for i in range(int(count)):
            box = expected["detection_boxes"][b, i]
            partner = [j for j in sorted(free)
                       if actual["detection_classes"][b, j] == expected["detection_classes"][b, i]
                       and abs(actual["detection_scores"][b, j]
                               - expected["detection_scores"][b, i]) <= score_atol
                       and np.abs(actual["detection_boxes"][b, j] - box).max() <= box_atol]
            if partner:
                free.remove(partner[0])
            else:
                unmatched.append((i, int(expected["detection_classes"][b, i]),
                                  float(expected["detection_scores"][b, i]), box.tolist()))
        early = [u for u in unmatched if u[0] < strict_top]
        assert not early, f"image {b}: top-{strict_top} detections without a match: {early}"
        assert len(unmatched) <= (1.0 - min_fraction) * count, (
            f"image {b}: {len(unmatched)} of {count} detections have no match, "
            f"e.g. {unmatched[:3]}")
