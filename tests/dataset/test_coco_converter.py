"""COCO converter: round trip through the pipeline, validation, --skip_invalid, colour modes."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from dataset import create_coco_tfrecord
from dataset.create_coco_tfrecord import convert_coco
from dataset.detection_input import build_detection_dataset
from dataset.errors import DatasetError
from dataset.tfrecord_format import parse_detection_example


def noise_image(height=64, width=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _eval_batches(pattern, num_classes, image_size=128, max_instances=10):
    dataset = build_detection_dataset(pattern, image_size, False, 4, num_classes=num_classes,
                                      max_instances_per_image=max_instances)
    out = {}
    for _, labels in dataset:
        for i, source_id in enumerate(labels["source_ids"].numpy()):
            out[int(source_id)] = {k: v[i].numpy() for k, v in labels.items()}
    return out


def _coco_by_image(json_path):
    with open(json_path) as handle:
        data = json.load(handle)
    by_image = {image["id"]: [] for image in data["images"]}
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(ann)
    return by_image


def test_round_trip_sample_coco_to_pipeline(sample):
    expected = _coco_by_image(sample["val_json"])
    got = _eval_batches(sample["val_file_pattern"], sample["num_classes"])
    assert sorted(got) == sorted(expected)
    for image_id, anns in expected.items():
        labels = got[image_id]
        num = int(labels["num_groundtruth_boxes"])
        assert num == len(anns)
        boxes = np.array([[a["bbox"][1], a["bbox"][0], a["bbox"][1] + a["bbox"][3], a["bbox"][0] + a["bbox"][2]]
                          for a in anns])
        np.testing.assert_allclose(labels["groundtruth_boxes"][:num], boxes, atol=1e-3)
        assert labels["groundtruth_classes"][:num].tolist() == [a["category_id"] for a in anns]
        np.testing.assert_allclose(labels["groundtruth_areas"][:num], [a["area"] for a in anns])
        assert labels["groundtruth_is_crowd"][:num].tolist() == [0] * num
        assert np.all(labels["groundtruth_boxes"][num:] == -1) and np.all(labels["groundtruth_classes"][num:] == -1)
        assert labels["image_sizes"].tolist() == [128, 128]
        assert labels["image_scales"] == pytest.approx(1.0)


def test_category_ids_kept_crowd_and_area_carried(tmp_path, helpers):
    image = noise_image(60, 100)
    anns = [{"image_id": 42, "category_id": 90, "bbox": [10, 5, 20, 30], "area": 321.0, "iscrowd": 1},
            {"image_id": 42, "category_id": 1, "bbox": [50, 10, 40, 40], "area": 1600.0}]
    json_path, image_dir = helpers.write_coco(tmp_path, [(42, "a.jpg", image)], anns, num_categories=90)
    summary = convert_coco(json_path, image_dir, str(tmp_path / "out"), num_shards=1)
    assert summary.num_images == 1 and summary.num_objects == 2
    record = next(iter(tf.data.TFRecordDataset(summary.paths)))
    parsed = parse_detection_example(record)
    assert parsed["labels"].numpy().tolist() == [90, 1]
    assert parsed["is_crowd"].numpy().tolist() == [1, 0]
    assert parsed["areas"].numpy().tolist() == [321.0, 1600.0]
    assert parsed["texts"].numpy().tolist() == [b"c90", b"c1"]
    np.testing.assert_allclose(parsed["xmin"].numpy(), [0.1, 0.5])
    np.testing.assert_allclose(parsed["ymax"].numpy(), [35 / 60, 50 / 60], rtol=1e-6)
    # The original JPEG is stored unchanged (no recompression).
    with open(os.path.join(image_dir, "a.jpg"), "rb") as handle:
        assert parsed["encoded"].numpy() == handle.read()


def test_image_info_json_without_annotations(tmp_path, helpers):
    images = [(1, "a.jpg", noise_image()), (2, "b.jpg", noise_image(seed=1))]
    json_path, image_dir = helpers.write_coco(tmp_path, images, [])
    with open(json_path) as handle:
        data = json.load(handle)
    del data["annotations"]  # image_info_test*.json has none
    with open(json_path, "w") as handle:
        json.dump(data, handle)
    summary = convert_coco(json_path, image_dir, str(tmp_path / "test"), num_shards=2)
    assert summary.num_images == 2 and summary.num_objects == 0
    got = _eval_batches(os.path.join(tmp_path, "test-*"), 3)
    assert sorted(got) == [1, 2]
    assert all(int(v["num_groundtruth_boxes"]) == 0 for v in got.values())
    assert all(int(v["num_positives"]) == 0 for v in got.values())


BAD_CASES = {
    "undecodable": ([(7, "bad.jpg", b"\xff\xd8\xffthis is not a jpeg")], [], "image id 7 (bad.jpg)",
                    "cannot be decoded"),
    "missing file": ([(8, "missing.jpg", None)], [], "image id 8 (missing.jpg)", "cannot read image file"),
    "outside": ([(9, "a.jpg", noise_image())], [{"image_id": 9, "category_id": 1, "bbox": [70, 10, 20, 20]}],
                "image id 9 (a.jpg)", "outside the 80x64"),
    "zero size": ([(10, "a.jpg", noise_image())], [{"image_id": 10, "category_id": 1, "bbox": [5, 5, 0, 20]}],
                  "image id 10 (a.jpg), object annotation id 1", "zero or negative"),
    "class id": ([(11, "a.jpg", noise_image())], [{"image_id": 11, "category_id": 4, "bbox": [5, 5, 10, 10]}],
                 "image id 11 (a.jpg), object annotation id 1", "class id 4 is outside 1..3"),
    "too many": ([(12, "a.jpg", noise_image())], [{"image_id": 12, "category_id": 1, "bbox": [1, 1, 5, 5]}] * 4,
                 "image id 12 (a.jpg)", "more than --max_instances_per_image=3"),
    "non-integer id": ([("abc", "a.jpg", noise_image())], [], "image id abc (a.jpg)", "not an integer"),
    "size mismatch": ([(13, "a.jpg", noise_image())], [], "image id 13 (a.jpg)", "annotation says 81x64"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_data_raises_error_naming_the_image(tmp_path, case, helpers):
    images, anns, where, what = BAD_CASES[case]
    images = [(i, f, c if c is not None else b"") for i, f, c in images]
    json_path, image_dir = helpers.write_coco(tmp_path, images, anns)
    if case == "missing file":
        os.remove(os.path.join(image_dir, "missing.jpg"))
    if case == "size mismatch":
        with open(json_path) as handle:
            data = json.load(handle)
        data["images"][0]["width"] = 81
        with open(json_path, "w") as handle:
            json.dump(data, handle)
    with pytest.raises(DatasetError) as info:
        convert_coco(json_path, image_dir, str(tmp_path / "out"), num_shards=1, num_classes=3,
                     max_instances_per_image=3)
    message = str(info.value)
    assert where in message and what in message, message
    assert "instances_test.json" in message


def test_unknown_image_id_in_annotation_is_named(tmp_path, helpers):
    json_path, image_dir = helpers.write_coco(tmp_path, [(1, "a.jpg", noise_image())],
                                      [{"image_id": 5, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    with pytest.raises(DatasetError, match="annotation id 1 refers to image id 5"):
        convert_coco(json_path, image_dir, str(tmp_path / "out"), num_shards=1)


def test_skip_invalid_counts_reasons_and_keeps_the_rest(tmp_path, helpers):
    images = [(1, "good.jpg", noise_image()), (2, "bad.jpg", b"garbage"), (3, "crowded.jpg", noise_image(seed=2)),
              ("x", "id.jpg", noise_image(seed=3))]
    anns = ([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
             {"image_id": 1, "category_id": 9, "bbox": [1, 1, 10, 10]},
             {"image_id": 1, "category_id": 2, "bbox": [1, 1, 0, 10]},
             {"image_id": 1, "category_id": 2, "bbox": [75, 1, 20, 10]},
             {"image_id": 1, "category_id": 3, "bbox": [70, 50, 10.5, 14.5]}]  # overshoots by 0.5 px: clipped
            + [{"image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5]}] * 4)
    json_path, image_dir = helpers.write_coco(tmp_path, images, anns)
    summary = convert_coco(json_path, image_dir, str(tmp_path / "out"), num_shards=2, num_classes=3,
                           max_instances_per_image=3, skip_invalid=True)
    assert summary.num_images == 1 and summary.num_objects == 2
    assert dict(summary.skipped.counts) == {
        "undecodable image": 1, "more objects than max_instances_per_image": 1, "non-integer source_id": 1,
        "class id out of range": 1, "box with zero or negative size": 1, "box outside the image": 1}
    assert dict(summary.clipped.counts) == {"box clipped to the image (within --box_tolerance_px)": 1}
    assert "bad.jpg" in summary.skipped.examples["undecodable image"][0]
    got = _eval_batches(str(tmp_path / "out-*"), 3)
    np.testing.assert_allclose(got[1]["groundtruth_boxes"][:2], [[1, 1, 11, 11], [50, 70, 64, 80]], atol=1e-3)


@pytest.mark.parametrize("mode,fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "PNG"), ("RGBA", "PNG"),
                                      ("L", "PNG"), ("P", "PNG")])
def test_grayscale_cmyk_png_are_converted_to_rgb_jpeg(tmp_path, mode, fmt, helpers):
    array = np.zeros((40, 50, 3), np.uint8)
    array[:, :25] = (200, 60, 30)
    array[:, 25:] = (30, 90, 220)
    data = helpers.image_bytes(array, fmt, mode)
    json_path, image_dir = helpers.write_coco(tmp_path, [(1, "img." + fmt.lower(), data)],
                                      [{"image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 20]}])
    summary = convert_coco(json_path, image_dir, str(tmp_path / "out"), num_shards=1)
    assert summary.num_images == 1
    assert sum(summary.converted.values()) == 1
    parsed = parse_detection_example(next(iter(tf.data.TFRecordDataset(summary.paths))))
    assert parsed["encoded"].numpy()[:3] == b"\xff\xd8\xff"
    decoded = tf.io.decode_jpeg(parsed["encoded"]).numpy()
    assert decoded.shape == (40, 50, 3)
    if mode in ("RGB", "RGBA", "CMYK", "P"):
        # Colours survive (left reddish, right bluish).
        assert decoded[20, 10, 0] > decoded[20, 10, 2] and decoded[20, 40, 2] > decoded[20, 40, 0]


def test_command_line(tmp_path, capsys, helpers):
    json_path, image_dir = helpers.write_coco(tmp_path, [(1, "a.jpg", noise_image())],
                                      [{"image_id": 1, "category_id": 2, "bbox": [1, 1, 10, 10]}])
    with pytest.raises(SystemExit) as info:
        create_coco_tfrecord.main(["--help"])
    assert info.value.code == 0
    code = create_coco_tfrecord.main(["--annotations_json", json_path, "--image_dir", image_dir, "--output_prefix",
                                      str(tmp_path / "cli"), "--num_shards", "3", "--report_json",
                                      str(tmp_path / "report.json")])
    assert code == 0
    assert len(glob.glob(str(tmp_path / "cli-*-of-00003.tfrecord"))) == 3
    with open(tmp_path / "report.json") as handle:
        assert json.load(handle)["num_images"] == 1
    # A bad file gives exit code 2 and a message, not a traceback.
    assert create_coco_tfrecord.main(["--annotations_json", str(tmp_path / "nope.json"), "--image_dir", image_dir,
                                      "--output_prefix", str(tmp_path / "x")]) == 2
