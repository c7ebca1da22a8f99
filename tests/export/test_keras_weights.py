"""Keras-weights export (``model_inspect.py --runmode keras_weights``, ``export(format=
"keras_weights")``) and the NumPy inference pipeline (``portable=True``), on TensorFlow.

The JAX side of both is ``tests_jax/`` (a separate process: the backend is fixed at import).
"""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _d0_config():
    from common.config import load_config

    return load_config(model_name="efficientdet-d0", hparams="image_size=128")


def test_export_round_trip_and_refusals(tmp_path, automl_fixtures):
    from common.checkpoints import CheckpointError, restore_for_inference
    from common.config import build_network, load_config
    from common.export.errors import ExportError
    from common.export.keras_weights import (count_arrays, export_keras_weights,
                                             load_keras_weights, save_keras_weights)
    from common.layers.batch_norm_folding import fold_batch_norms

    checkpoint = str(automl_fixtures / "effdet_d0" / "tf1_ema_ckpt")
    export = tmp_path / "d0_keras"
    export_keras_weights(_d0_config(), checkpoint, str(export), label_map={1: "person"})
    assert sorted(p.name for p in export.iterdir()) == ["config.yaml", "label_map.json",
                                                        "model.weights.h5"]
    assert count_arrays(export / "model.weights.h5") == 709  # every D0 variable, head BNs too
    expected = build_network(_d0_config())
    restore_for_inference(expected, checkpoint)
    loaded = build_network(_d0_config())
    load_keras_weights(loaded, str(export))
    values = {v.path: v.numpy() for v in expected.weights}
    assert len(values) == len(loaded.weights) == 709
    for variable in loaded.weights:
        np.testing.assert_array_equal(variable.numpy(), values[variable.path], err_msg=variable.path)

    # An earlier export is replaced whole; a folder of other files is refused untouched.
    export_keras_weights(_d0_config(), None, str(export))
    assert not (export / "label_map.json").exists()
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    with pytest.raises(ExportError, match="not part of a Keras-weights export"):
        export_keras_weights(_d0_config(), None, str(foreign))
    assert [p.name for p in foreign.iterdir()] == ["todo.txt"]

    # Another model's weights: refused by count, naming the file.
    classifier = build_network(load_config(model_name="efficientnetv2-b0",
                                           hparams="image_size=32"))
    with pytest.raises(CheckpointError, match="weight arrays"):
        load_keras_weights(classifier, str(export))
    with pytest.raises(CheckpointError, match="No Keras weights"):
        load_keras_weights(classifier, str(tmp_path))
    # A folded (inference-only) network cannot be saved; nothing is written.
    fold_batch_norms(loaded)
    with pytest.raises(ExportError, match="folded"):
        save_keras_weights(loaded, str(tmp_path / "folded.weights.h5"))
    assert not list(tmp_path.glob("folded*"))


def test_numpy_pipeline_gives_the_graphs_outputs(d0_module, v2_module, d0_checkpoint,
                                                 v2_checkpoint, make_images, same_detections):
    """The pipeline non-TensorFlow backends use (NumPy letterbox, network, NumPy NMS),
    run here on TensorFlow against the graph wrapper: same detections, same classes."""
    from common.export.factory import build_inference_module
    from common.export.portable import PortablePredictor
    from common.export.predictors import KerasPredictor

    from common.config import load_config

    portable_d0 = build_inference_module(_d0_config(), d0_checkpoint, portable=True)
    assert isinstance(portable_d0.anchors.boxes, np.ndarray) and portable_d0.image_size == (128, 128)
    graph, numpy_side = KerasPredictor(d0_module), PortablePredictor(portable_d0)
    for height, width in ((128, 128), (100, 150), (300, 200)):  # letterboxed both ways
        images = make_images(2, height, width, seed=height)
        same_detections(numpy_side(images), graph(images), box_atol=1e-2, score_atol=1e-5)

    v2 = load_config(model_name="efficientnetv2-b0", hparams="image_size=96")
    portable_v2 = PortablePredictor(build_inference_module(v2, v2_checkpoint, portable=True))
    images = make_images(3, 120, 100, seed=1)
    expected, actual = KerasPredictor(v2_module)(images), portable_v2(images)
    np.testing.assert_allclose(actual["probabilities"], expected["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(actual["top_k_classes"], expected["top_k_classes"])


def test_keras_weights_cli_from_a_trained_model(tmp_path, trained_detector):
    from common.export.factory import build_inference_module
    from common.export.api import InferenceModel
    from efficientdet import Detector

    export = tmp_path / "demo_keras"
    result = subprocess.run(
        [sys.executable, "model_inspect.py", "--runmode", "keras_weights",
         "--ckpt_path", trained_detector["model_dir"], "--export_dir", str(export)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loads on every Keras backend" in result.stdout
    assert json.loads((export / "label_map.json").read_text()) == {
        "1": "circle", "2": "square", "3": "triangle"}

    images = sorted(pathlib.Path(trained_detector["sample"]["val_image_dir"]).glob("*"))[:3]
    original = Detector.from_checkpoint(trained_detector["model_dir"]).predict(images)
    exported = Detector.from_checkpoint(str(export))
    assert exported.label_map == {1: "circle", 2: "square", 3: "triangle"}
    config = exported.config
    portable = InferenceModel.__new__(Detector)
    InferenceModel.__init__(portable, config, build_inference_module(config, str(export),
                                                                     portable=True),
                            exported.label_map)
    for graph_result, numpy_result, expected in zip(exported.predict(images),
                                                    portable.predict(images), original):
        assert len(expected["scores"]) > 0
        for result in (graph_result, numpy_result):
            assert len(result["scores"]) == len(expected["scores"])
            np.testing.assert_allclose(result["scores"], expected["scores"], atol=1e-5, rtol=0)
            np.testing.assert_allclose(result["boxes"], expected["boxes"], atol=1e-3, rtol=0)
            assert result["names"] == expected["names"]

    # A directory of other files is refused before anything is built.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    result = subprocess.run(
        [sys.executable, "model_inspect.py", "--runmode", "keras_weights",
         "--ckpt_path", trained_detector["model_dir"], "--export_dir", str(tmp_path / "other")],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "not part of a Keras-weights export" in result.stderr
    assert "Traceback" not in result.stderr
