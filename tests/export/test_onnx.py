"""ONNX export (tf2onnx) checked in onnxruntime against the Keras outputs.

Tolerances: raw outputs / logits 1e-4 absolute (onnxruntime's kernels sum in
another order); hard-NMS detections up to near-tie order with boxes within
1e-2 px and scores within 1e-5.
"""
import numpy as np
import pytest

pytest.importorskip("tf2onnx", reason="tf2onnx is in requirements.txt")
pytest.importorskip("onnxruntime", reason="onnxruntime is in requirements.txt")

from common.export.errors import ExportError  # noqa: E402
from common.export.onnx_export import export_onnx  # noqa: E402
from common.export.predictors import KerasPredictor, OnnxPredictor  # noqa: E402


@pytest.mark.slow
def test_d0_onnx_matches_keras_raw_outputs(d0_module, make_images, tmp_path):
    path = export_onnx(d0_module, str(tmp_path / "d0.onnx"))
    onnx_model = OnnxPredictor(path)
    images = make_images(2, 128, 128, seed=21)
    expected = KerasPredictor(d0_module).raw(d0_module.preprocess_batch(images)[0])
    actual = onnx_model(images)
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, atol=1e-4, rtol=0, err_msg=key)


def test_v2_onnx_matches_keras_logits(v2_module, make_images, tmp_path):
    path = export_onnx(v2_module, str(tmp_path / "v2.onnx"), include_postprocess=True)
    images = make_images(3, 96, 96, seed=22)
    expected = KerasPredictor(v2_module)(images)
    actual = OnnxPredictor(path)(images)
    np.testing.assert_allclose(actual["logits"], expected["logits"], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(actual["top_k_classes"], expected["top_k_classes"])


def test_soft_nms_is_refused_for_onnx(d0_module, tmp_path):
    # d0_module uses the official Gaussian soft-NMS, which ONNX cannot express.
    with pytest.raises(ExportError, match="model.nms.method=hard"):
        export_onnx(d0_module, str(tmp_path / "d0.onnx"), include_postprocess=True)


@pytest.mark.slow
def test_d0_onnx_with_hard_nms_matches_keras(d0_module, make_images, same_detections, tmp_path):
    from efficientdet.inference import DetectionInference

    hard = DetectionInference(d0_module.network, (128, 128), 90, nms_method="hard")
    path = export_onnx(hard, str(tmp_path / "d0_nms.onnx"), include_postprocess=True)
    images = make_images(2, 128, 128, seed=23)
    expected = KerasPredictor(hard)(images)
    assert expected["num_detections"].min() > 10
    same_detections(OnnxPredictor(path)(images), expected, box_atol=1e-2, score_atol=1e-5)
