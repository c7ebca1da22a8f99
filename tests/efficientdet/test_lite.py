"""EfficientDet-Lite, EfficientNet-Lite and EfficientNetV2-XL against google/automl.

``tests/official_lite/`` (its README says how it was made) holds the official
Keras models' weight lists, made by running google/automl's code, and the
official EfficientDet-Lite0 outputs for seeded weights
(``tests/official_lite/seeded_weights.py``). The Lite0 checkpoint is written
here, in the released name-based layout (every variable also under
``<name>/ExponentialMovingAverage``), and loaded as users load the release.
"""
import json
import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf

from common.backbones import EfficientNet
from common.checkpoints import restore_for_inference
from common.checkpoints.official import official_name
from efficientdet.builder import build_efficientdet
from efficientdet.config import preset_config
from efficientdet.inference import DetectionInference

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / "official_lite"
sys.path.insert(0, str(REFERENCE))
from seeded_weights import seeded_value  # noqa: E402

# Trainable parameters asserted by google/automl's own architecture test
# (efficientdet_arch_test.py, 90 classes).
LITE_TRAINABLE = {
    "efficientdet-lite0": 3_243_470, "efficientdet-lite1": 4_248_318,
    "efficientdet-lite2": 5_252_334, "efficientdet-lite3": 8_350_862,
    "efficientdet-lite3x": 9_280_862, "efficientdet-lite4": 15_130_894,
}


def _ours(model):
    ours = {}
    for v in model.weights:
        name = official_name(v.path)
        assert name not in ours, f"duplicate weight name {name}"
        ours[name] = (tuple(v.shape), bool(v.trainable))
    return ours


@pytest.mark.parametrize("name", sorted(LITE_TRAINABLE))
def test_lite_detectors_have_the_official_weights(name, read_weight_list):
    """Exact trainable count, and every weight's name, shape and trainability
    one-to-one with the official Keras model (backbone, BiFPN, heads)."""
    model = build_efficientdet(name, num_classes=90, image_size=64)  # counts do not depend on size
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable == LITE_TRAINABLE[name]
    official = read_weight_list(REFERENCE / f"{name}_weights.txt", with_trainable=True)
    ours = _ours(model)
    assert sorted(set(official) - set(ours)) == []
    assert sorted(set(ours) - set(official)) == []
    assert {k: ours[k] for k in official if ours[k] != official[k]} == {}
    backbone = preset_config(name).backbone_name
    assert sum(k.startswith(backbone + "/") for k in ours) > 100


def test_lite_settings_are_the_official_ones():
    lite0, lite3 = preset_config("efficientdet-lite0"), preset_config("efficientdet-lite3")
    assert lite0.image_size == (320, 320) and lite0.anchor_scale == 3.0
    assert lite3.anchor_scale == 4.0  # not set officially for Lite3 / Lite4: the default
    for config in (lite0, lite3):
        assert (config.activation, config.fpn_weight_method, config.preprocessing) == (
            "relu6", "sum", "scale_127")


@pytest.mark.parametrize("name, size, expected", [
    ("efficientnet-lite0", 224, 4_652_008), ("efficientnet-lite4", 300, 13_006_568)])
def test_efficientnet_lite_classifiers_have_the_official_size(name, size, expected):
    """Counts of automl's efficientnet_lite_builder_test (trainable, 1000 classes)."""
    import keras

    network = EfficientNet(name, num_classes=1000)
    network(keras.Input((size, size, 3)))
    assert sum(int(np.prod(v.shape)) for v in network.trainable_weights) == expected


@pytest.mark.slow
def test_efficientnetv2_xl_is_the_official_model(read_weight_list):
    import keras

    network = EfficientNet("efficientnetv2-xl", num_classes=1000)
    network(keras.Input((64, 64, 3)))
    assert network.count_params() == 208_896_832  # automl's effnetv2_model_test
    official = read_weight_list(REFERENCE / "efficientnetv2-xl_weights.txt",
                                with_trainable=True)
    ours = _ours(network)
    assert len(official) == len(ours)
    assert {k: ours.get(k) for k in official if ours.get(k) != official[k]} == {}


def _write_released_checkpoint(directory, weights):
    """A name-based checkpoint as the official release: EMA shadows hold the
    weights; the plain names hold something else, so loading the raw values
    would show."""
    names, tensors = [], []
    for name, (shape, _) in sorted(weights.items()):
        value = seeded_value(name, shape)
        names += [name, f"{name}/ExponentialMovingAverage"]
        tensors += [tf.constant(value + 1.0), tf.constant(value)]
    names.append("global_step")
    tensors.append(tf.constant(123, tf.int64))
    prefix = str(directory / "model")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=tensors)
    (directory / "checkpoint").write_text('model_checkpoint_path: "model"\n')
    return directory


def test_lite0_gives_the_official_outputs_from_a_released_checkpoint(tmp_path, read_weight_list):
    """Raw outputs within 1e-4 of google/automl's, and the same detections
    (as sets) through our whole inference path: (x - 127) / 128, network,
    anchors at scale 3, Gaussian soft-NMS."""
    reference = np.load(REFERENCE / "lite0_reference.npz")
    official = read_weight_list(REFERENCE / "efficientdet-lite0_weights.txt",
                                with_trainable=True)
    checkpoint = _write_released_checkpoint(tmp_path, official)
    config = preset_config("efficientdet-lite0", num_classes=90)
    network = build_efficientdet("efficientdet-lite0", num_classes=90)
    message = restore_for_inference(network, str(checkpoint))
    assert f"{len(official)} from EMA" in message, message
    module = DetectionInference.from_config(network, config)
    image = np.random.RandomState(0).uniform(0, 255, (1, 320, 320, 3)).astype(np.float32)
    normalized, scales = module.preprocess_batch(tf.constant(image))
    np.testing.assert_array_equal(scales.numpy(), [1.0])
    raw = module.raw_outputs(normalized)
    for level in range(3, 8):
        for kind in ("class", "box"):
            ours = np.asarray(raw[f"{kind}_outputs_p{level}"])
            assert ours.shape == tuple(reference[f"{kind}_shape_l{level}"])
            np.testing.assert_allclose(
                ours.reshape(-1)[reference[f"{kind}_index_l{level}"]],
                reference[f"{kind}_value_l{level}"], atol=1e-4, rtol=0,
                err_msg=f"{kind} outputs P{level}")
    detections = module.postprocess(raw, scales)
    valid = int(reference["valid"][0])
    assert int(detections["num_detections"][0]) == valid
    expected = list(zip(reference["classes"][0][:valid].astype(int), reference["scores"][0][:valid],
                        reference["boxes"][0][:valid]))
    found = list(zip(np.asarray(detections["detection_classes"][0][:valid]).astype(int),
                     np.asarray(detections["detection_scores"][0][:valid]),
                     np.asarray(detections["detection_boxes"][0][:valid])))
    unmatched = []
    for cls, score, box in expected:
        match = next((i for i, (c, s, b) in enumerate(found) if c == cls and abs(s - score) < 1e-4
                      and np.abs(b - box).max() < 1e-2), None)
        if match is None:
            unmatched.append((cls, score, box))
        else:
            found.pop(match)
    assert unmatched == [] and found == []


def test_lite0_release_converts_for_fine_tuning_on_other_classes(tmp_path, read_weight_list):
    """``import_checkpoint`` (what ``--init_checkpoint`` also reads): every EMA
    weight loads by name, only the class predictor is re-initialized for 3
    classes, and the model directory records Lite0's own settings."""
    from common.checkpoints.import_cli import main as import_main
    from common.config import load_config

    official = read_weight_list(REFERENCE / "efficientdet-lite0_weights.txt",
                                with_trainable=True)
    (tmp_path / "release").mkdir()
    checkpoint = _write_released_checkpoint(tmp_path / "release", official)
    output = tmp_path / "lite0-3"
    assert import_main(["--model_name", "efficientdet-lite0", "--ckpt", str(checkpoint),
                        "--num_classes", "3", "--skip_mismatch", "--output_dir", str(output)]) == 0
    summary = json.loads((output / "import_summary.json").read_text())
    assert summary["counts"]["skipped_shape"] == 2
    assert summary["counts"]["loaded"] == summary["counts"]["from_ema"] == len(official) - 2
    assert {s["name"] for s in summary["skipped_shape"]} == {
        "class_net/class-predict/pointwise_kernel", "class_net/class-predict/bias"}
    config = load_config(str(output / "config.yaml"))
    assert (config.model.name, config.model.num_classes, config.model.image_size) == (
        "efficientdet-lite0", 3, (320, 320))
    assert (config.model.preprocessing, config.model.anchor_scale) == ("scale_127", 3.0)
