"""Weights exported on TensorFlow run on JAX: every variable arrives, raw outputs agree
within 1e-4, and the Python API (NumPy pre- and post-processing) gives TensorFlow's
detections and classifications."""
import sys

import numpy as np
import pytest

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import _tf_reference as reference  # noqa: E402  (the shared inputs)

D0_NORMALIZATION = (np.array([123.675, 116.28, 103.53], np.float32),
                    np.array([58.395, 57.12, 57.375], np.float32))


@pytest.fixture(scope="module")
def networks(tf_reference):
    """The unfolded D0 (512) and V2-S (384) built on JAX with the exported weights."""
    from common.config import build_network, load_config
    from common.export.keras_weights import load_keras_weights

    built = {}
    for key, name in (("d0", "efficientdet-d0"), ("v2s", "efficientnetv2-s")):
        network = build_network(load_config(model_name=name))
        load_keras_weights(network, tf_reference["dir"] / f"{key}_keras")
        built[key] = network
    return built


@pytest.mark.parametrize("key", ["d0", "v2s"])
def test_every_variable_arrives_by_path(networks, tf_reference, key):
    expected = {k.split(":", 2)[2]: v for k, v in tf_reference["outputs"].items()
                if k.startswith(f"var:{key}:")}
    network = networks[key]
    assert len(expected) == len(network.weights) == len({v.path for v in network.weights})
    assert len(expected) == (709 if key == "d0" else 672)  # the official variable counts
    for variable in network.weights:
        np.testing.assert_array_equal(np.asarray(variable.numpy()), expected[variable.path],
                                      err_msg=variable.path)


def test_d0_raw_outputs_match_tensorflow_and_the_official_model(networks, tf_reference,
                                                                automl_fixtures):
    image = np.load(automl_fixtures / "effdet_d0" / "input.npy")
    mean, std = D0_NORMALIZATION
    raw = networks["d0"].predict_on_batch((image - mean) / std)
    official = np.load(automl_fixtures / "effdet_d0" / "raw_outputs.npz")
    for level in range(3, 8):
        for kind, ours in (("class", raw["class_outputs"][level - 3]),
                           ("box", raw["box_outputs"][level - 3])):
            ours = np.asarray(ours)
            np.testing.assert_allclose(ours, tf_reference["outputs"][f"raw:{kind}_l{level}"],
                                       atol=1e-4, rtol=0, err_msg=f"{kind} P{level} vs TF")
            np.testing.assert_allclose(ours, official[f"{kind}_l{level}"], atol=1e-4, rtol=0,
                                       err_msg=f"{kind} P{level} vs google/automl")


def test_v2s_logits_match_tensorflow(networks, tf_reference):
    logits = np.asarray(networks["v2s"].predict_on_batch(reference.classifier_input()))
    expected = tf_reference["outputs"]["logits"]
    assert expected.std() > 0.1  # informative logits, not a constant
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_detector_on_jax_gives_tensorflows_detections(tf_reference, same_detections):
    from efficientdet import Detector

    detector = Detector.from_checkpoint(str(tf_reference["dir"] / "d0_keras"))
    assert detector.module.__class__.__name__ == "PortableDetectionInference"
    assert detector.label_map[1] == "person"  # the COCO names written beside the weights
    predictions = detector.predict(reference.detector_images())
    for i, prediction in enumerate(predictions):
        expected = {key: tf_reference["outputs"][f"det:{i}:{key}"]
                    for key in ("boxes", "scores", "classes")}
        assert len(expected["scores"]) == 100

        def batch(result):
            return {"num_detections": np.array([len(result["scores"])]),
                    "detection_boxes": np.asarray(result["boxes"])[None],
                    "detection_scores": np.asarray(result["scores"])[None],
                    "detection_classes": np.asarray(result["classes"])[None]}

        # Boxes in original-image pixels (the second image is letterboxed by 512/450).
        same_detections(batch(prediction), batch(expected), box_atol=0.05, score_atol=1e-4)


@pytest.fixture(scope="module")
def classifier(tf_reference):
    from efficientnet_v2 import Classifier

    return Classifier.from_checkpoint(str(tf_reference["dir"] / "v2s_keras"))


def test_classifier_on_jax_gives_tensorflows_classes(tf_reference, classifier):
    assert classifier.module.__class__.__name__ == "PortableClassifierInference"
    for i, prediction in enumerate(classifier.predict(reference.classifier_images())):
        expected_classes = tf_reference["outputs"][f"cls:{i}:classes"]
        expected = tf_reference["outputs"][f"cls:{i}:probabilities"]
        np.testing.assert_allclose(prediction["probabilities"], expected, atol=1e-5, rtol=0)
        # Same classes, except two neighbours whose probabilities tie within float noise.
        for rank in np.flatnonzero(prediction["classes"] != expected_classes):
            neighbours = expected[max(rank - 1, 0):rank + 2]
            assert np.ptp(neighbours) < 2e-5, (i, rank, prediction["classes"], expected_classes)
        assert prediction["classes"][0] == expected_classes[0] or np.ptp(expected[:2]) < 2e-5


def test_tensorflow_only_things_fail_with_the_fix(classifier, automl_fixtures, tmp_path):
    from common.checkpoints import CheckpointError
    from common.export.errors import ExportError
    from efficientnet_v2 import Classifier

    with pytest.raises(CheckpointError, match="--runmode keras_weights"):
        Classifier.from_checkpoint(str(automl_fixtures / "effnetv2_b0" / "tf1_ema_ckpt"),
                                   model_name="efficientnetv2-b0")
    with pytest.raises(ExportError, match="KERAS_BACKEND=tensorflow"):
        classifier.export(str(tmp_path / "saved_model"))
    assert not (tmp_path / "saved_model").exists()
    # The Keras-weights export works on JAX too, and holds the same arrays.
    classifier.export(str(tmp_path / "again"), format="keras_weights")
    from common.export.keras_weights import count_arrays

    assert count_arrays(tmp_path / "again" / "model.weights.h5") == 672


def test_tensorflow_was_never_imported():
    assert not any(name == "tensorflow" or name.startswith("tensorflow.") for name in sys.modules)
