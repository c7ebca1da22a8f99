"""The anchor analysis tool (dataset/analyze_boxes.py): coverage against a
brute-force IoU over every anchor, the search on boxes the default anchors
cannot match, the outputs, and one-line user errors."""
import json
import math

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common.config import load_config
from common.detection.anchors import AnchorSet
from common.detection.target_assigner import pairwise_iou
from dataset import analyze_boxes
from dataset.converter_utils import ShardedWriter, shard_pattern
from dataset.detection_parser import decode_detection_record
from dataset.preprocessing import preprocess_detection_image
from dataset.tfrecord_format import build_detection_example

HPARAMS = "model.image_size=256x384,model.num_classes=3"  # non-square: the letterbox pads on the right


def _brute_force_best_iou(boxes, anchor_boxes):
    """Best IoU of each box ``[K, 4]`` over every anchor, with the target assigner's own IoU."""
    return tf.reduce_max(pairwise_iou(tf.constant(boxes, tf.float32), tf.constant(anchor_boxes)), axis=1).numpy()


def _eval_view_boxes(file_pattern, image_size, num_classes):
    """Boxes ``[K, 4]`` in input pixels and classes ``[K]`` the way the evaluation pipeline maps them
    (decode the image, resize-and-pad, divide by its image_scale), crowd boxes left out."""
    boxes, classes = [], []
    for serialized in tf.data.TFRecordDataset(tf.io.gfile.glob(file_pattern)):
        data = decode_detection_record(serialized, num_classes, 100)
        _, image_scale = preprocess_detection_image(data["image"], image_size)
        hw = tf.cast(data["image_size"], tf.float32)
        keep = ~data["is_crowd"].numpy()
        boxes.append((data["boxes"] * tf.concat([hw, hw], 0) / image_scale).numpy()[keep])
        classes.append(data["classes"].numpy()[keep])
    return np.concatenate(boxes), np.concatenate(classes)


def _run(capsys, *args):
    code = analyze_boxes.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_end_to_end_on_the_sample_matches_brute_force(sample, tmp_path, capsys):
    code, out, _ = _run(capsys, "--file_pattern", sample["val_file_pattern"], "--hparams", HPARAMS,
                        "--label_map", sample["label_map"], "--output_dir", str(tmp_path))
    assert code == 0
    result = json.loads((tmp_path / "analysis.json").read_text())
    coverage = result["current"]["coverage"]

    model = load_config(None, None, HPARAMS).model
    boxes, classes = _eval_view_boxes(sample["val_file_pattern"], model.image_size, 3)
    best = _brute_force_best_iou(boxes, AnchorSet.from_config(model).boxes)
    assert result["data"]["num_boxes"] == len(boxes) > 10
    assert 0.0 <= coverage["all"]["coverage"] <= 1.0
    assert coverage["all"]["matched"] == int(np.sum(best >= 0.5))
    assert coverage["all"]["coverage"] == pytest.approx(np.mean(best >= 0.5))
    assert coverage["all"]["mean_best_iou"] == pytest.approx(best.mean(), abs=1e-5)
    assert result["unmatchable"]["count"] == int(np.sum(best < 0.5))
    for class_id, name in enumerate(("circle", "square", "triangle"), start=1):
        mask = classes == class_id
        assert coverage["classes"][name]["boxes"] == int(mask.sum())
        assert coverage["classes"][name]["matched"] == int(np.sum(best[mask] >= 0.5))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert coverage["sizes"]["large"]["boxes"] == int(np.sum(area >= 96 ** 2))
    assert result["matching"] == {"matched_threshold": 0.5, "unmatched_threshold": 0.5,
                                  "source": result["matching"]["source"]}
    assert result["model"]["image_size"] == [256, 384]

    # The sample boxes are roughly square: the suggestion is at least as good, and pastes as a config.
    suggested = result["suggested"]
    assert suggested["coverage"]["all"]["coverage"] >= coverage["all"]["coverage"]
    pasted = load_config(None, None, HPARAMS + "," + ",".join(suggested["config_lines"])).model
    assert list(pasted.aspect_ratios) == suggested["settings"]["aspect_ratios"]
    assert pasted.anchor_scale == suggested["settings"]["anchor_scale"]

    with Image.open(tmp_path / "boxes.png") as figure:
        assert figure.format == "PNG" and figure.size == (1100, 620)
        pixels = np.asarray(figure.convert("RGB")).reshape(-1, 3)
    assert np.any(np.all(pixels == (220, 40, 40), axis=1))  # the suggested anchors / ratios
    assert np.mean(np.all(pixels == 255, axis=1)) < 0.95  # something is drawn
    assert "Coverage" in out and "class circle" in out and "model.aspect_ratios=" in out


def test_best_anchor_iou_equals_brute_force_on_random_boxes():
    anchors = AnchorSet.build((256, 384), 3, 7, 3, (1.0, 2.0, 0.5, 5.0), 3.0)
    rng = np.random.default_rng(0)
    size = np.exp(rng.uniform(np.log(4), np.log(300), (300, 2)))  # thin, tiny and large boxes
    centre = rng.uniform(0, 1, (300, 2)) * (256, 384)
    boxes = np.concatenate([np.maximum(centre - size / 2, 0), np.minimum(centre + size / 2, (256, 384))], 1)
    best, index = analyze_boxes.best_anchor_iou(boxes, anchors)
    expected = _brute_force_best_iou(boxes, anchors.boxes)
    np.testing.assert_allclose(best, expected, atol=1e-5)
    np.testing.assert_allclose(analyze_boxes.aligned_iou(boxes, anchors.boxes[index]), expected, atol=1e-5)


def _write_elongated_records(prefix, num_images=12, size=128, seed=0):
    """Records of ``size``-square grey images, each with a box of w/h = 6, one of w/h = 1/6 and a square,
    of about 39 px (sqrt area) at random positions."""
    rng = np.random.default_rng(seed)
    buffer = tf.io.encode_jpeg(tf.fill([size, size, 3], tf.constant(128, tf.uint8))).numpy()
    with ShardedWriter(prefix, 2) as writer:
        for index in range(num_images):
            boxes = []
            for height, width in ((16.0, 96.0), (96.0, 16.0), (40.0, 40.0)):
                factor = rng.uniform(0.95, 1.05)
                height, width = height * factor, width * factor
                ymin, xmin = rng.uniform(0, size - height), rng.uniform(0, size - width)
                boxes.append((ymin / size, xmin / size, (ymin + height) / size, (xmin + width) / size))
            example = build_detection_example(buffer, size, size, str(index + 1), boxes, [1, 1, 1],
                                              filename=f"synthetic_{index}.jpg")
            writer.write(example.SerializeToString())
    return shard_pattern(prefix)


def test_search_fixes_boxes_the_default_anchors_cannot_match(tmp_path, capsys):
    pattern = _write_elongated_records(str(tmp_path / "records" / "thin"))
    code, out, _ = _run(capsys, "--file_pattern", pattern, "--hparams", "model.image_size=128,model.num_classes=1",
                        "--output_dir", str(tmp_path / "out"))
    assert code == 0
    result = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert result["data"]["num_boxes"] == 36
    # A box whose w/h is rho times the nearest anchor ratio reaches at best IoU 1 / (2 sqrt(rho) - 1)
    # (module docstring). w/h = 6 against the default ratio 2 (and 1/6 against 1/2): rho = 3, IoU <= 0.41,
    # so only the squares (a third of the boxes) can be covered.
    bound = 1.0 / (2.0 * math.sqrt(3.0) - 1.0)
    assert bound < 0.5
    current = result["current"]["coverage"]["all"]
    assert current["coverage"] <= 1.0 / 3.0 + 1e-9
    assert result["unmatchable"]["count"] >= 24
    assert all(e["best_iou"] <= bound + 1e-3 for e in result["unmatchable"]["examples"])

    suggested = result["suggested"]
    assert not suggested["is_current"]
    assert suggested["coverage"]["all"]["coverage"] > 0.9
    ratios = suggested["settings"]["aspect_ratios"]
    assert len(ratios) == 3 and max(ratios) >= 4.0 and min(ratios) <= 0.25
    # Independently: the pasted lines give anchors that the brute force confirms.
    model = load_config(None, None, "model.image_size=128,model.num_classes=1,"
                        + ",".join(suggested["config_lines"])).model
    boxes, _ = _eval_view_boxes(pattern, model.image_size, 1)
    best = _brute_force_best_iou(boxes, AnchorSet.from_config(model).boxes)
    assert np.mean(best >= 0.5) == pytest.approx(suggested["coverage"]["all"]["coverage"])
    assert "model.aspect_ratios=[" in out and "Paste into --hparams" in out


def test_max_boxes_cuts_and_says_so_and_id_to_name_label_maps(sample, tmp_path, capsys, caplog):
    label_map = tmp_path / "names.json"
    label_map.write_text(json.dumps({"1": "ring", "2": "box", "3": "wedge"}))
    with caplog.at_level("WARNING", logger="dataset"):
        code, out, _ = _run(capsys, "--file_pattern", sample["val_file_pattern"], "--hparams", HPARAMS,
                            "--label_map", str(label_map), "--max_boxes", "5", "--output_dir", str(tmp_path / "o"))
    assert code == 0
    result = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert result["data"]["num_boxes"] == 5 and result["data"]["truncated"]
    assert 1 <= result["data"]["num_records"] <= 5
    assert set(result["current"]["coverage"]["classes"]) <= {"ring", "box", "wedge"}
    assert "--max_boxes=5" in out
    assert any("--max_boxes=5" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("mistake", ["missing pattern", "not a tfrecord", "unknown model", "bad label map",
                                     "missing label map"])
def test_user_mistakes_are_one_line_and_exit_code_2(sample, tmp_path, capsys, mistake):
    args = {"--file_pattern": sample["val_file_pattern"], "--hparams": HPARAMS,
            "--output_dir": str(tmp_path / "out")}
    named = None
    if mistake == "missing pattern":
        args["--file_pattern"] = named = str(tmp_path / "nothing-*.tfrecord")
    elif mistake == "not a tfrecord":
        path = tmp_path / "photo-00000-of-00001.tfrecord"
        path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(64))
        args["--file_pattern"] = named = str(path)
    elif mistake == "unknown model":
        args["--model_name"] = named = "efficientdet-d99"
        args["--hparams"] = "model.num_classes=3"
    elif mistake == "bad label map":
        path = tmp_path / "labels.json"
        path.write_text(json.dumps({"circle": "round"}))
        args["--label_map"] = named = str(path)
    else:
        args["--label_map"] = named = str(tmp_path / "absent.json")
    code, _, err = _run(capsys, *[item for pair in args.items() for item in pair])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0]
    assert not (tmp_path / "out").exists()
