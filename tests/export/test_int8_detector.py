"""Acceptance: an int8 TFLite detector, NMS inside, still finds the sample objects.

The quickstart detector is trained briefly on the sample dataset (session
fixture ``trained_detector``), exported as int8 TFLite with
``model_inspect.py`` (representative images from the sample training
TFRecords), and run with ``tf.lite.Interpreter`` on the sample validation
images. Thresholds (measured values in the comments):

* a *hit* is a detection of the right class with IoU >= 0.5 against a
  ground-truth box and score >= ``MIN_SCORE``; at least ``MIN_HIT_FRACTION``
  of the validation images must have one with fp32, and int8 may lose at
  most ``MAX_HIT_LOSS`` of them;
* over the ground-truth boxes that fp32 detects at >= ``MIN_SCORE``, the
  logit of the best matching int8 score differs from the fp32 one by at most
  ``MEDIAN_LOGIT_ATOL`` (median) and ``P90_LOGIT_ATOL`` (90th percentile),
  and at most ``MAX_OUTLIER_FRACTION`` of these boxes (at least one) differ
  by more than ``LOGIT_ATOL``. Logits, not scores: quantization error is
  roughly constant before the sigmoid, so a score moves by about
  ``s (1 - s)`` times it, and how confident the training run left the model
  (it varies between runs and machines) would otherwise set the tolerance.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from common.config import load_config
from common.export import tflite
from common.export.factory import build_inference_module
from common.export.infer import read_image
from common.export.predictors import KerasPredictor, TFLitePredictor

REPO = pathlib.Path(__file__).resolve().parents[2]
NUM_VAL_IMAGES = 32
# Training is not bit-reproducible on CPU, so how confident the detector ends up
# varies between runs and machines: the median fp32 score of the detected boxes was
# 0.05-0.25 in early runs and 0.69 in recent D0 runs (Lite0 after its 8 epochs: 0.07).
# Hit fractions at >= 0.05 were 81-100%; int8 matched fp32 within 3 points each time.
MIN_SCORE = 0.05
MIN_HIT_FRACTION = 0.6  # of the fp32 model: a sanity floor for the training run
MAX_HIT_LOSS = 0.1      # int8 may miss at most this fraction of images more than fp32
# Measured |logit int8 - logit fp32| over the detected boxes: D0 median 0.050, p90 0.12
# (71 boxes, scores around 0.69); Lite0 median 0.011, p90 0.049 (60 boxes, around 0.07).
# In score units, five early D0 runs (scores 0.05-0.25) had medians <= 0.006 and p90s
# <= 0.026 (<= 0.06 and about 0.2 in logits), and a CI run (confident model) a median of
# 0.013 and a p90 of 0.041 (about 0.06 and 0.19): that run failed the former score
# tolerances, which is why they are logits now. Single large values (3.6 in logit, D0)
# are boxes whose soft-NMS neighbourhood changed: soft-NMS is discontinuous (a
# neighbour crossing IoU / score ties changes how much a box is decayed), and which box
# that is varies from run to run. A tail count instead of the max: broken quantization
# moves most boxes, not one in 20.
LOGIT_ATOL = 1.0
MAX_OUTLIER_FRACTION = 0.05
P90_LOGIT_ATOL = 0.4
MEDIAN_LOGIT_ATOL = 0.15


def logits(scores):
    """The logits ``log(s / (1 - s))`` of sigmoid scores (0 and 1 clipped to 1e-6 away)."""
    scores = np.clip(np.asarray(scores, np.float64), 1e-6, 1 - 1e-6)
    return np.log(scores) - np.log1p(-scores)


def _iou(box, boxes):
    """IoU of one ``(ymin, xmin, ymax, xmax)`` box with ``[N, 4]`` boxes."""
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(area + areas - inter, 1e-9)


def load_val_set(sample, count):
    """The first ``count`` validation images and their ``(yxyx boxes [G, 4], classes [G])``."""
    coco = json.loads(pathlib.Path(sample["val_json"]).read_text())
    images, truths = [], []
    for info in sorted(coco["images"], key=lambda i: i["id"])[:count]:
        images.append(read_image(os.path.join(sample["val_image_dir"], info["file_name"])))
        anns = [a for a in coco["annotations"] if a["image_id"] == info["id"]]
        boxes = np.array([[y, x, y + h, x + w] for x, y, w, h in (a["bbox"] for a in anns)],
                         np.float32).reshape(-1, 4)
        truths.append((boxes, np.array([a["category_id"] for a in anns], np.int32)))
    return images, truths


def best_scores(outputs, truths):
    """Per image, per ground-truth box: the highest score of a right-class detection
    with IoU >= 0.5 (0 when there is none). Returns a list of ``[G]`` arrays."""
    result = []
    for b, (gt_boxes, gt_classes) in enumerate(truths):
        count = int(outputs["num_detections"][b])
        boxes = outputs["detection_boxes"][b, :count]
        scores = outputs["detection_scores"][b, :count]
        classes = outputs["detection_classes"][b, :count]
        best = np.zeros(len(gt_boxes), np.float32)
        for g, (box, cls) in enumerate(zip(gt_boxes, gt_classes)):
            ok = (classes == cls) & (_iou(box, boxes) >= 0.5) if count else np.zeros(0, bool)
            if ok.any():
                best[g] = scores[ok].max()
        result.append(best)
    return result


def _spread(values):
    if not values.size:
        return "none"
    return (f"median {np.median(values):.4f}, p90 {np.percentile(values, 90):.4f}, "
            f"max {values.max():.4f}")


def _hit_fraction(per_image):
    return float(np.mean([(s >= MIN_SCORE).any() for s in per_image]))


@pytest.mark.slow
@pytest.mark.parametrize("trained", ["trained_detector", "trained_lite0"])
def test_int8_detector_with_nms_inside_still_detects_sample_objects(trained, request, tmp_path):
    """The quickstart D0 and the quickstart-fine-tuned EfficientDet-Lite0 (ReLU6,
    (x - 127) / 128 pixels, sum BiFPN) keep their detections in int8."""
    trained = request.getfixturevalue(trained)
    model_dir, sample = trained["model_dir"], trained["sample"]
    tflite_path = tmp_path / "quickstart_int8.tflite"
    result = subprocess.run(
        [sys.executable, "model_inspect.py", "--runmode", "tflite", "--quantize", "int8",
         "--config", os.path.join(model_dir, "config.yaml"), "--ckpt_path", model_dir,
         "--file_pattern", sample["train_file_pattern"], "--num_calibration_steps", "32",
         "--tflite_path", tflite_path],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "post-processing included" in result.stdout

    ops = tflite.op_counts(tflite_path.read_bytes())
    assert ops["NON_MAX_SUPPRESSION_V5"] >= 1 and "WHILE" not in ops, ops
    assert not [op for op in ops if op.startswith(("CUSTOM", "Flex"))], ops
    lite = TFLitePredictor(str(tflite_path))
    assert not lite.returns_raw and lite.fixed_batch_size == 1

    config = load_config(os.path.join(model_dir, "config.yaml"))
    keras_model = KerasPredictor(build_inference_module(config, model_dir))
    images, truths = load_val_set(sample, NUM_VAL_IMAGES)
    batch = np.stack(images)  # the sample images are all 128x128, the network size
    fp32 = best_scores(keras_model(batch), truths)
    int8 = best_scores(lite(batch), truths)

    fp32_hits, int8_hits = _hit_fraction(fp32), _hit_fraction(int8)
    fp32_all, int8_all = np.concatenate(fp32), np.concatenate(int8)
    detected = fp32_all >= MIN_SCORE
    fp32_detected, int8_detected = fp32_all[detected], int8_all[detected]
    differences = np.abs(logits(int8_detected) - logits(fp32_detected))
    print(f"hit fraction fp32 {fp32_hits:.2f} int8 {int8_hits:.2f}; over {detected.sum()} "
          f"detected boxes (median fp32 score {np.median(fp32_detected):.3f}), |int8 - fp32| "
          f"logit: {_spread(differences)}; "
          f"score: {_spread(np.abs(int8_detected - fp32_detected))}; "
          f"file {tflite_path.stat().st_size / 2**20:.2f} MiB")
    print("fp32 scores", np.round(fp32_detected, 4).tolist())
    print("int8 scores", np.round(int8_detected, 4).tolist())
    assert fp32_hits >= MIN_HIT_FRACTION, f"the trained fp32 detector hits only {fp32_hits:.0%}"
    assert int8_hits >= fp32_hits - MAX_HIT_LOSS, f"int8 hits {int8_hits:.0%} (fp32 {fp32_hits:.0%})"
    assert detected.sum() >= len(truths), "too few detected boxes to compare int8 with fp32"
    outliers = int((differences > LOGIT_ATOL).sum())
    assert outliers <= max(1, int(MAX_OUTLIER_FRACTION * differences.size)), (
        f"{outliers} of {differences.size} boxes moved by more than {LOGIT_ATOL} in logit")
    assert np.percentile(differences, 90) <= P90_LOGIT_ATOL, np.percentile(differences, 90)
    assert np.median(differences) <= MEDIAN_LOGIT_ATOL, np.median(differences)


@pytest.mark.slow
def test_benchmark_of_the_int8_detector_file(trained_detector, tmp_path):
    """``--runmode benchmark --tflite_path`` on a static-batch int8 detector with NMS:
    end-to-end rows for every batch size (batches run as chunks of the file's size)."""
    model_dir, sample = trained_detector["model_dir"], trained_detector["sample"]
    config = os.path.join(model_dir, "config.yaml")
    tflite_path, out_json = tmp_path / "int8.tflite", tmp_path / "bench.json"
    for args in (["--runmode", "tflite", "--quantize", "int8", "--ckpt_path", model_dir,
                  "--input_image", os.path.join(sample["val_image_dir"], "*.jpg"),
                  "--num_calibration_steps", "4", "--tflite_path", tflite_path],
                 ["--runmode", "benchmark", "--tflite_path", tflite_path, "--batch_sizes", "1,2",
                  "--num_threads", "1", "--warmup_runs", "1", "--bench_runs", "3",
                  "--output_json", out_json]):
        result = subprocess.run([sys.executable, "model_inspect.py", "--config", config,
                                 *map(str, args)], cwd=REPO, capture_output=True, text=True,
                                timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out_json.read_text())
    assert report["format"] == "tflite" and "tflite" in report["variant_definitions"]
    assert report["tflite_threads"] == 1
    rows = {(r["part"], r["batch_size"]): r for r in report["results"]}
    assert set(rows) == {("end_to_end", 1), ("end_to_end", 2)}  # NMS inside: no raw rows
    for row in rows.values():
        assert row["throughput_images_per_s"] > 0 and row["latency_ms"]["p99"] > 0
