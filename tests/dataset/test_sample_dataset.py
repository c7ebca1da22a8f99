"""The synthetic sample datasets: deterministic, cached, objects large and valid."""
import glob
import json
import os

import numpy as np
import pytest

from dataset import make_sample_dataset
from dataset.make_sample_dataset import make_sample_datasets

TINY = dict(num_train=4, num_val=3, image_size=96, num_shards=1, classification_num_train=4,
            classification_num_val=4, classification_image_size=32)


def _contents(paths, keys=("train_file_pattern", "val_file_pattern", "classification_train_file_pattern")):
    out = {}
    for key in keys:
        for path in sorted(glob.glob(paths[key])):
            with open(path, "rb") as handle:
                out[os.path.basename(path)] = handle.read()
    with open(paths["val_json"]) as handle:
        out["val_json"] = json.load(handle)
    return out


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = make_sample_datasets(str(tmp_path / "a"), seed=11, **TINY)
    b = make_sample_datasets(str(tmp_path / "b"), seed=11, **TINY)
    c = make_sample_datasets(str(tmp_path / "c"), seed=12, **TINY)
    assert _contents(a) == _contents(b)
    assert _contents(a) != _contents(c)


def test_cached_when_parameters_match_regenerated_otherwise(tmp_path):
    first = make_sample_datasets(str(tmp_path), seed=0, **TINY)
    shard = glob.glob(first["train_file_pattern"])[0]
    stamp = os.path.getmtime(shard)
    again = make_sample_datasets(str(tmp_path), seed=0, **TINY)
    assert again == first and os.path.getmtime(shard) == stamp
    changed = make_sample_datasets(str(tmp_path), seed=0, **dict(TINY, num_val=5))
    with open(changed["val_json"]) as handle:
        assert len(json.load(handle)["images"]) == 5
    assert not glob.glob(str(tmp_path / ".building-*"))


def test_objects_are_large_valid_and_cover_all_classes(sample):
    with open(sample["train_json"]) as handle:
        data = json.load(handle)
    size = sample["image_size"]
    per_image = {}
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= size and y + h <= size
        assert 0 < ann["area"] <= w * h
        per_image.setdefault(ann["image_id"], []).append(ann)
    unoccluded = [max(a["bbox"][2], a["bbox"][3]) for a in data["annotations"]]
    assert np.median(unoccluded) >= 0.2 * size and max(unoccluded) <= 0.5 * size
    assert {a["category_id"] for a in data["annotations"]} == {1, 2, 3}
    assert len(per_image) == len(data["images"])  # every image has at least one object
    assert max(len(v) for v in per_image.values()) > 1
    assert sample["num_classes"] == 3 and sample["classification_num_classes"] == 4
    with open(sample["label_map"]) as handle:
        assert json.load(handle) == {"circle": 1, "square": 2, "triangle": 3}


def test_command_line(tmp_path, capsys):
    args = ["--output_dir", str(tmp_path), "--num_train", "2", "--num_val", "1", "--image_size", "64",
            "--classification_num_train", "4", "--classification_num_val", "4",
            "--classification_image_size", "32", "--num_shards", "1"]
    assert make_sample_dataset.main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert glob.glob(printed["train_file_pattern"]) and printed["num_classes"] == 3
