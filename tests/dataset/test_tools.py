"""Smoke tests of the person-facing tools: inspect_tfrecords and benchmark_input."""
import json

import numpy as np
import pytest
from PIL import Image

from common.detection.anchors import AnchorSet
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


def test_inspect_uses_the_detectors_own_anchors(sample, tmp_path, capsys):
    # A non-D0 geometry: non-square input and a different anchor scale.
    hparams = "model.image_size=256x384,model.num_classes=3,model.anchor_scale=3.0"
    model = inspect_tfrecords.detection_model_config(hparams=hparams)
    expected = AnchorSet.from_config(model)
    assert expected.image_size == (256, 384)
    processor = inspect_tfrecords.detection_processor(model, augment=False)
    assert processor.image_size == (256, 384)
    np.testing.assert_array_equal(processor.assigner.anchors.boxes, expected.boxes)
    assert not np.array_equal(expected.boxes[:9], AnchorSet.build((256, 384)).boxes[:9])

    d1 = inspect_tfrecords.detection_model_config(model_name="efficientdet-d1", num_classes=3)
    d1_anchors = inspect_tfrecords.detection_processor(d1).assigner.anchors
    assert d1_anchors.image_size == (640, 640)
    np.testing.assert_array_equal(d1_anchors.boxes, AnchorSet.from_config(d1).boxes)

    code = inspect_tfrecords.main(["--file_pattern", sample["val_file_pattern"], "--hparams", hparams,
                                   "--num_images", "1", "--no_augment", "--output_dir", str(tmp_path)])
    assert code == 0
    assert f"at 256x384: {expected.num_anchors} anchors" in capsys.readouterr().out
    (path,) = tmp_path.glob("detection_*.png")
    assert Image.open(path).size == (384, 256)


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
