"""model_inspect.py run modes, run as a user would (subprocesses)."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_CLASSIFIER = ["--model_name", "efficientnetv2-b0", "--hparams", "num_classes=5,image_size=32"]


def _run(*args):
    result = subprocess.run([sys.executable, "model_inspect.py", *map(str, args)], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    return result


def _images(directory, make_images):
    directory.mkdir()
    Image.fromarray(make_images(1, 120, 200, seed=1)[0]).save(directory / "street.jpg")
    Image.fromarray(make_images(1, 240, 100, seed=2)[0]).save(directory / "tall.png")
    return directory


def test_infer_writes_one_annotated_image_per_input(tmp_path, d0_checkpoint, make_images):
    inputs = _images(tmp_path / "in", make_images)
    out_dir, out_json = tmp_path / "out", tmp_path / "detections.json"
    result = _run("--runmode", "infer", "--model_name", "efficientdet-d0",
                  "--hparams", "image_size=128", "--ckpt_path", d0_checkpoint,
                  "--input_image", inputs / "*", "--output_image_dir", out_dir,
                  "--min_score_thresh", "0.0", "--max_boxes_to_draw", "7",
                  "--output_json", out_json)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out_dir.iterdir()) == ["street.jpg", "tall.png"]
    with Image.open(out_dir / "tall.png") as annotated:
        assert annotated.size == (100, 240)  # original size, boxes drawn on the input
        changed = np.asarray(annotated.convert("RGB")) != make_images(1, 240, 100, seed=2)[0]
        assert changed.any()
    records = json.loads(out_json.read_text())
    assert [r["drawn"] for r in records] == [7, 7]
    first = records[0]["detections"][0]
    assert first["class_name"]  # 90 classes: COCO names by default
    assert set(first) == {"box_yxyx", "score", "class_id", "class_name"}


def test_a_trained_model_directory_names_its_classes(tmp_path, trained_detector):
    """Training on the sample data stores its class names in the model directory
    (found next to the records); infer uses them without --label_map."""
    model_dir = pathlib.Path(trained_detector["model_dir"])
    assert json.loads((model_dir / "label_map.json").read_text()) == {
        "1": "circle", "2": "square", "3": "triangle"}
    out_json = tmp_path / "detections.json"
    result = _run("--runmode", "infer", "--ckpt_path", model_dir,
                  "--input_image", pathlib.Path(trained_detector["sample"]["val_image_dir"]) / "*",
                  "--output_image_dir", tmp_path / "out", "--min_score_thresh", "0.0",
                  "--max_boxes_to_draw", "3", "--output_json", out_json)
    assert result.returncode == 0, result.stderr[-3000:]
    names = {d["class_name"] for r in json.loads(out_json.read_text()) for d in r["detections"]}
    assert names and names <= {"circle", "square", "triangle"}


def test_infer_bad_path_and_unreadable_image_are_clear_errors(tmp_path, side_by_side):
    (tmp_path / "broken.jpg").write_bytes(b"this is not a jpeg")
    no_match, result, no_output = side_by_side(
        "model_inspect.py",
        ["--runmode", "infer", "--input_image", tmp_path / "nothing-*.jpg",
         "--output_image_dir", tmp_path / "out"],
        ["--runmode", "infer", "--input_image", tmp_path / "*.jpg",
         "--output_image_dir", tmp_path / "out"],
        ["--runmode", "infer", "--input_image", tmp_path / "*.jpg"])
    assert no_match.returncode == 2
    assert "matches no file" in no_match.stderr and "Traceback" not in no_match.stderr
    assert result.returncode == 2
    assert "Cannot read image" in result.stderr and "broken.jpg" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    assert no_output.returncode == 2 and "needs --output_image_dir" in no_output.stderr


def test_benchmark_json_has_the_fields(tmp_path):
    out_json = tmp_path / "bench.json"
    result = _run("--runmode", "benchmark", *TINY_CLASSIFIER, "--batch_sizes", "1,2",
                  "--warmup_runs", "1", "--bench_runs", "3", "--output_json", out_json)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Methodology:" in result.stdout and "p99 ms" in result.stdout
    report = json.loads(out_json.read_text())
    assert report["format"] == "keras" and report["batch_sizes"] == [1, 2]
    assert "warmup" in report["methodology"] and report["environment"]["tensorflow"]
    assert set(report["variant_definitions"]) == {"fp32"}
    rows = report["results"]
    assert {(r["variant"], r["part"], r["batch_size"]) for r in rows} == {
        ("fp32", part, b) for part in ("network", "end_to_end") for b in (1, 2)}
    for row in rows:
        assert row["throughput_images_per_s"] > 0 and row["runs"] == 3
        latency = row["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"]


def test_benchmark_bad_batch_sizes(tmp_path):
    result = _run("--runmode", "benchmark", *TINY_CLASSIFIER, "--batch_sizes", "1,x")
    assert result.returncode == 2 and "must be positive integers" in result.stderr


@pytest.mark.slow
def test_benchmark_compares_amp_and_xla_variants(tmp_path):
    out_json = tmp_path / "bench.json"
    result = _run("--runmode", "benchmark", *TINY_CLASSIFIER, "--batch_size", "2",
                  "--benchmark_variants", "fp32,amp,xla,amp+xla", "--warmup_runs", "1",
                  "--bench_runs", "2", "--output_json", out_json)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out_json.read_text())["results"]
    assert {r["variant"] for r in rows} == {"fp32", "amp", "xla", "amp+xla"}
    assert len(rows) == 8
    definitions = json.loads(out_json.read_text())["variant_definitions"]
    assert "mixed_float16" in definitions["amp"] and "XLA" in definitions["xla"]


@pytest.mark.slow
def test_saved_model_tflite_onnx_cli_and_benchmarks_of_the_files(tmp_path, v2_checkpoint,
                                                                side_by_side, make_images):
    model = ["--model_name", "efficientnetv2-b0", "--hparams", "image_size=64",
             "--ckpt_path", v2_checkpoint]
    export_dir = tmp_path / "export"
    ops_json = tmp_path / "ops.json"
    # The three exports are independent runs: side by side, then the two benchmarks.
    saved_model, tflite, onnx = side_by_side(
        "model_inspect.py",
        ["--runmode", "saved_model", *model, "--export_dir", export_dir / "sm"],
        ["--runmode", "tflite", *model, "--export_dir", export_dir, "--output_json", ops_json],
        ["--runmode", "onnx", *model, "--export_dir", export_dir])
    assert saved_model.returncode == 0, saved_model.stderr[-3000:]
    assert (export_dir / "sm" / "saved_model.pb").is_file()
    assert tflite.returncode == 0, tflite.stderr[-3000:]
    assert "MiB" in tflite.stdout and "CONV_2D x" in tflite.stdout
    tflite_file = export_dir / "efficientnetv2-b0.tflite"
    assert json.loads(ops_json.read_text())["bytes"] == tflite_file.stat().st_size
    assert onnx.returncode == 0, onnx.stderr[-3000:]
    assert (export_dir / "efficientnetv2-b0.onnx").is_file()
    formats = (("--saved_model_dir", export_dir / "sm", "saved_model"),
               ("--tflite_path", tflite_file, "tflite"))
    inputs = _images(tmp_path / "in", make_images)
    infer = ["--runmode", "infer", "--tflite_path", tflite_file, "--input_image", inputs / "*"]
    *benchmarks, lite_infer, mismatch = side_by_side("model_inspect.py", *(
        ["--runmode", "benchmark", *model, flag, path, "--batch_sizes", "1,2",
         "--warmup_runs", "1", "--bench_runs", "2", "--output_json", tmp_path / f"{fmt}.json"]
        for flag, path, fmt in formats),
        [*infer, *model, "--output_image_dir", tmp_path / "out",
         "--output_json", tmp_path / "lite.json"],
        [*infer, *model[:3], "image_size=96", "--output_image_dir", tmp_path / "never"])
    for (_, _, fmt), result in zip(formats, benchmarks):
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads((tmp_path / f"{fmt}.json").read_text())
        assert report["format"] == fmt and {r["batch_size"] for r in report["results"]} == {1, 2}
    # The TFLite file on pictures of other sizes (fitted to 64x64 in NumPy).
    assert lite_infer.returncode == 0, lite_infer.stderr[-3000:]
    # The config's wrapper only pre- and post-processes: no weights loaded or folded,
    # and no "random initialization" warning without --ckpt_path.
    assert "Folded" not in lite_infer.stderr and "Restored" not in lite_infer.stderr
    assert "random initialization" not in mismatch.stderr
    with Image.open(tmp_path / "out" / "tall.png") as annotated:
        assert annotated.size == (100, 240)
    records = json.loads((tmp_path / "lite.json").read_text())
    assert [len(r["top_k"]) for r in records] == [5, 5]
    assert mismatch.returncode == 2 and not (tmp_path / "never").exists()
    assert "a classification model for 64x64 images, the config a classification model for " \
           "96x96" in mismatch.stderr
