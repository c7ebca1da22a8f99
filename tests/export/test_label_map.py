"""Label maps: every form the project writes or documents reads back as {id: name}."""
import json

import pytest

from common.export.label_map import COCO_LABEL_MAP, LabelMapError, load_label_map


def test_the_converters_name_to_id_json_reads_as_id_to_name(tmp_path):
    path = tmp_path / "label_map.json"  # what the detection converters write
    path.write_text(json.dumps({"circle": 1, "square": 2, "triangle": 3}))
    assert load_label_map(str(path)) == {1: "circle", 2: "square", 3: "triangle"}


@pytest.mark.parametrize("name,text", [
    ("map.yaml", "1: person\n2: car\n"),
    ("map.json", '{"1": "person", "2": "car"}'),
    ("map.txt", "1 person\n2: car\n"),
    ("map.txt", "person\ncar\n"),
    ("map.yaml", "- person\n- car\n"),
])
def test_documented_forms(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert load_label_map(str(path)) == {1: "person", 2: "car"}


def test_bad_maps_are_named(tmp_path):
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps({"person": "car"}))
    with pytest.raises(LabelMapError, match=r"mixed.json' must map integer class ids to names"):
        load_label_map(str(mixed))
    shared = tmp_path / "shared.json"
    shared.write_text(json.dumps({"person": 1, "car": 1}))
    with pytest.raises(LabelMapError, match="two names share a class id"):
        load_label_map(str(shared))
    assert load_label_map("coco")[1] == "person" and len(COCO_LABEL_MAP) == 80


def _config(tmp_path, **data):
    from common.config import load_config

    overrides = [f"data.{k}={v}" for k, v in data.items()]
    return load_config(model_name="efficientdet-d0", overrides=overrides)


def test_run_label_map_finds_the_names_a_converter_left_next_to_the_records(tmp_path):
    from common.export.label_map import run_label_map

    (tmp_path / "detection" / "tfrecords").mkdir(parents=True)
    names = tmp_path / "detection" / "label_map.json"
    names.write_text(json.dumps({"circle": 1, "square": 2}))
    pattern = str(tmp_path / "detection" / "tfrecords" / "train-*")
    assert run_label_map(_config(tmp_path, train_file_pattern=pattern)) == (
        {1: "circle", 2: "square"}, str(names))
    explicit = tmp_path / "names.txt"
    explicit.write_text("ball\nbat\n")
    assert run_label_map(_config(tmp_path, train_file_pattern=pattern,
                                 label_map=str(explicit)))[0] == {1: "ball", 2: "bat"}
    # A model directory's own names come before guesses from the data folders.
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "config.yaml").write_text("model: {name: efficientdet-d0}\n")
    (model_dir / "label_map.json").write_text(json.dumps({"1": "disc", "2": "box"}))
    from common.config import load_config

    config = load_config(model_name="efficientdet-d0", overrides=[
        f"data.train_file_pattern={pattern}", f"runtime.model_dir={model_dir}"])
    assert run_label_map(config)[0] == {1: "disc", 2: "box"}


def test_run_label_map_falls_back_to_the_coco_categories(tmp_path):
    from common.export.label_map import model_dir_label_map, run_label_map

    gt = tmp_path / "instances_val.json"
    gt.write_text(json.dumps({"categories": [{"id": 3, "name": "car"}], "images": []}))
    assert run_label_map(_config(tmp_path, val_json_file=str(gt))) == ({3: "car"}, str(gt))
    assert run_label_map(_config(tmp_path)) == ({}, None)
    assert model_dir_label_map(str(tmp_path / "nowhere" / "ckpt-1")) == {}
    with pytest.raises(FileNotFoundError, match="missing.json"):
        run_label_map(_config(tmp_path, label_map=str(tmp_path / "missing.json")))


def test_model_dir_of_tells_our_model_directories_from_official_folders(tmp_path):
    from common.model_dir import model_dir_of

    ours = tmp_path / "run"
    (ours / "best").mkdir(parents=True)
    (ours / "config.yaml").write_text("model:\n  name: efficientdet-d0\ntrain:\n  batch_size: 8\n")
    assert model_dir_of(str(ours)) == str(ours)
    assert model_dir_of(str(ours / "ckpt-3")) == str(ours)
    assert model_dir_of(str(ours / "best" / "ckpt-2")) == str(ours)
    official = tmp_path / "efficientdet-d0"
    official.mkdir()
    (official / "config.yaml").write_text("act_type: swish\nimage_size: 512\n")  # automl hparams
    assert model_dir_of(str(official)) is None
    assert model_dir_of(None) is None
