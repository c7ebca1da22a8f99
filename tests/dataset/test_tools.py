"""Smoke tests of the person-facing tools: inspect_tfrecords and benchmark_input."""
import json

import pytest
from PIL import Image

from dataset import benchmark_input, inspect_tfrecords


def test_inspect_writes_pngs_with_boxes(sample, tmp_path):
    names = inspect_tfrecords.load_names(sample["label_map"])
    assert names == {1: "circle", 2: "square", 3: "triangle"}
    paths = inspect_tfrecords.inspect_detection(sample["val_file_pattern"], str(tmp_path), num_images=2,
                                                image_size=128, num_classes=3, names=names)
    assert len(paths) == 2
    for path in paths:
        image = Image.open(path)
        assert image.size == (128, 128) and image.mode == "RGB"
    code = inspect_tfrecords.main(["--file_pattern", sample["classification_val_file_pattern"], "--task",
                                   "classification", "--num_classes", "4", "--image_size", "32", "--num_images",
                                   "2", "--output_dir", str(tmp_path / "cls"), "--randaug_magnitude", "5"])
    assert code == 0 and len(list((tmp_path / "cls").glob("*.png"))) == 2


@pytest.mark.slow
def test_benchmark_runs_and_writes_json(sample, tmp_path):
    out = tmp_path / "bench.json"
    code = benchmark_input.main([
        "--detection_pattern", sample["train_file_pattern"], "--num_classes_detection", "3",
        "--classification_pattern", sample["classification_train_file_pattern"],
        "--num_classes_classification", "4", "--detection_batch_size", "2", "--classification_batch_size", "2",
        "--num_batches", "1", "--warmup_batches", "1", "--repeats", "2", "--output_json", str(out)])
    assert code == 0
    results = json.loads(out.read_text())["results"]
    assert [r["pipeline"].split()[0] for r in results] == ["detection"] * 2 + ["classification"] * 3
    assert all(r["images_per_second"] > 0 and len(r["repeats"]) == 2 for r in results)
