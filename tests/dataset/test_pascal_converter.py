"""PASCAL VOC converter: a tiny VOC folder made from the sample data, round trip
through the pipeline and the COCO-style ground-truth JSON."""
import json
import os
import shutil

import numpy as np
import pytest

from dataset import create_pascal_tfrecord
from dataset.create_pascal_tfrecord import VOC_CLASSES, convert_pascal, load_label_map
from dataset.detection_input import build_detection_dataset
from dataset.errors import DatasetError

XML = """<annotation><folder>VOCsample</folder><filename>{filename}</filename>
<size><width>{width}</width><height>{height}</height><depth>3</depth></size>
{objects}</annotation>"""
OBJECT = """<object><name>{name}</name><difficult>{difficult}</difficult>
<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"""


def make_voc(sample, root, extra_object=None):
    """Writes ``root/VOCsample`` from the sample's COCO val set; returns the expected boxes by file."""
    with open(sample["val_json"]) as handle:
        coco = json.load(handle)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    voc = os.path.join(root, "VOCsample")
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    expected, stems = {}, []
    for index, image in enumerate(coco["images"]):
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        objects = []
        for k, a in enumerate(anns):
            x, y, w, h = a["bbox"]
            objects.append(dict(name=names[a["category_id"]], difficult=int(k == 0), xmin=x, ymin=y, xmax=x + w,
                                ymax=y + h))
        if extra_object and index == 0:
            objects.append(extra_object)
        stem = os.path.splitext(image["file_name"])[0]
        stems.append(stem)
        shutil.copy(os.path.join(sample["val_image_dir"], image["file_name"]), os.path.join(voc, "JPEGImages"))
        with open(os.path.join(voc, "Annotations", stem + ".xml"), "w") as handle:
            handle.write(XML.format(filename=image["file_name"], width=image["width"], height=image["height"],
                                    objects="\n".join(OBJECT.format(**o) for o in objects)))
        expected[image["file_name"]] = objects
    with open(os.path.join(voc, "ImageSets", "Main", "val.txt"), "w") as handle:
        handle.write("\n".join(stems) + "\n")
    return expected


def test_voc_round_trip_records_and_ground_truth_json(sample, tmp_path):
    expected = make_voc(sample, tmp_path)
    prefix = str(tmp_path / "voc_val")
    summary = convert_pascal(str(tmp_path), prefix, years=["VOCsample"], split="val",
                             label_map_json=sample["label_map"], num_shards=2)
    assert summary.num_images == len(expected)
    label_map = load_label_map(sample["label_map"])
    with open(prefix + "_coco_gt.json") as handle:
        gt = json.load(handle)
    files = {image["id"]: image["file_name"] for image in gt["images"]}
    assert sorted(files) == list(range(1, len(expected) + 1))
    assert [c["name"] for c in gt["categories"]] == ["circle", "square", "triangle"]

    dataset = build_detection_dataset(prefix + "-*", 128, False, 3, num_classes=3, max_instances_per_image=8)
    seen = 0
    for _, labels in dataset:
        for i, source_id in enumerate(labels["source_ids"].numpy()):
            objects = expected[files[int(source_id)]]
            num = int(labels["num_groundtruth_boxes"][i])
            assert num == len(objects)
            boxes = [[o["ymin"], o["xmin"], o["ymax"], o["xmax"]] for o in objects]
            np.testing.assert_allclose(labels["groundtruth_boxes"][i, :num], boxes, atol=1e-3)
            assert labels["groundtruth_classes"][i, :num].numpy().tolist() == [label_map[o["name"]] for o in objects]
            anns = [a for a in gt["annotations"] if a["image_id"] == int(source_id)]
            np.testing.assert_allclose([a["bbox"] for a in anns],
                                       [[o["xmin"], o["ymin"], o["xmax"] - o["xmin"], o["ymax"] - o["ymin"]]
                                        for o in objects])
            seen += 1
    assert seen == len(expected)


def test_ignore_difficult_instances_is_counted(sample, tmp_path):
    expected = make_voc(sample, tmp_path)
    summary = convert_pascal(str(tmp_path), str(tmp_path / "v"), years=["VOCsample"], split="val",
                             label_map_json=sample["label_map"], num_shards=1, ignore_difficult_instances=True)
    total = sum(len(v) for v in expected.values())
    assert summary.num_objects == total - len(expected)
    assert summary.skipped.counts["difficult object (--ignore_difficult_instances)"] == len(expected)


def test_unknown_class_name_names_the_xml_file(sample, tmp_path):
    make_voc(sample, tmp_path, extra_object=dict(name="hexagon", difficult=0, xmin=1, ymin=1, xmax=9, ymax=9))
    with pytest.raises(DatasetError, match=r"val_000001\.xml, object \d+ \('hexagon'\).*not in the label map"):
        convert_pascal(str(tmp_path), str(tmp_path / "v"), years=["VOCsample"], split="val",
                       label_map_json=sample["label_map"], num_shards=1)
    summary = convert_pascal(str(tmp_path), str(tmp_path / "v"), years=["VOCsample"], split="val",
                             label_map_json=sample["label_map"], num_shards=1, skip_invalid=True)
    assert summary.skipped.counts["class name not in the label map"] == 1


def test_box_outside_names_the_xml_file(sample, tmp_path):
    make_voc(sample, tmp_path, extra_object=dict(name="circle", difficult=0, xmin=100, ymin=1, xmax=140, ymax=9))
    with pytest.raises(DatasetError, match=r"val_000001\.xml.*outside the 128x128"):
        convert_pascal(str(tmp_path), str(tmp_path / "v"), years=["VOCsample"], split="val",
                       label_map_json=sample["label_map"], num_shards=1)


def test_default_label_map_is_the_20_voc_classes():
    label_map = load_label_map(None)
    assert len(label_map) == 20 and label_map["aeroplane"] == 1 and label_map["tvmonitor"] == 20
    assert tuple(sorted(label_map, key=label_map.get)) == VOC_CLASSES


def test_command_line(sample, tmp_path):
    make_voc(sample, tmp_path)
    with pytest.raises(SystemExit) as info:
        create_pascal_tfrecord.main(["--help"])
    assert info.value.code == 0
    code = create_pascal_tfrecord.main(["--data_dir", str(tmp_path), "--year", "VOCsample", "--set", "all",
                                        "--output_prefix", str(tmp_path / "cli"), "--num_shards", "2",
                                        "--label_map_json", sample["label_map"]])
    assert code == 0
    assert os.path.exists(tmp_path / "cli_coco_gt.json")
    assert create_pascal_tfrecord.main(["--data_dir", str(tmp_path), "--year", "VOC2099", "--output_prefix",
                                        str(tmp_path / "x")]) == 2
