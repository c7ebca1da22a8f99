"""Detection pipeline: static shapes, targets that decode back to the ground
truth on the model's anchors, augmentation keeps boxes on their objects,
determinism, sharding, and errors naming bad records."""
import glob

import numpy as np
import pytest
import tensorflow as tf

from common.detection.anchors import AnchorSet, generate_anchors
from common.detection.box_coding import decode_boxes
from dataset.detection_input import DetectionExampleProcessor, build_detection_dataset
from dataset.input_utils import element_seeds
from dataset.preprocessing import MEAN_RGB, STDDEV_RGB
from dataset.tfrecord_format import build_detection_example

LEVELS = range(3, 8)


def _flat(labels, key, width):
    parts = [labels[f"{key}_targets_{level}"].numpy() for level in LEVELS]
    return np.concatenate([p.reshape(p.shape[0], -1, width) for p in parts], axis=1)


def test_static_shapes_and_anchor_count_match_the_model(sample):
    dataset = build_detection_dataset(sample["train_file_pattern"], 256, True, 2, num_classes=3, seed=0)
    images, labels = dataset.element_spec
    assert images.shape == (2, 256, 256, 3)
    anchors = generate_anchors(256)
    total = 0
    for level in LEVELS:
        side = 256 // 2 ** level
        assert labels[f"cls_targets_{level}"].shape == (2, side, side, 9)
        assert labels[f"box_targets_{level}"].shape == (2, side, side, 36)
        total += side * side * 9
    assert total == anchors.shape[0] == 9 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2)
    for key in ("num_positives", "source_ids", "image_scales", "num_dropped_boxes"):
        assert labels[key].shape == (2,)
    images, labels = next(iter(dataset))
    cls = _flat(labels, "cls", 1)
    assert set(np.unique(cls)) <= {-2, -1, 0, 1, 2}
    np.testing.assert_array_equal(labels["num_positives"].numpy(), (cls >= 0).sum(axis=(1, 2)))


def test_eval_targets_decode_to_the_original_boxes(sample):
    dataset = build_detection_dataset(sample["val_file_pattern"], 256, False, 4, num_classes=3,
                                      max_instances_per_image=8)
    anchors = generate_anchors(256)
    checked = 0
    for images, labels in dataset:
        assert images.shape[1:] == (256, 256, 3)
        cls = _flat(labels, "cls", 1)[..., 0]
        codes = _flat(labels, "box", 4)
        for i in range(cls.shape[0]):
            positive = cls[i] >= 0
            decoded = decode_boxes(codes[i][positive], anchors[positive]).numpy() * float(labels["image_scales"][i])
            num = int(labels["num_groundtruth_boxes"][i])
            gt = labels["groundtruth_boxes"][i, :num].numpy()
            gt_classes = labels["groundtruth_classes"][i, :num].numpy()
            for box, c in zip(decoded, cls[i][positive]):
                errors = np.abs(gt - box).max(axis=1)
                assert errors.min() < 1e-2
                assert gt_classes[errors.argmin()] == c + 1
            # Every ground-truth box is some anchor's target (force match).
            for box in gt:
                assert np.abs(decoded - box).max(axis=1).min() < 1e-2
            checked += 1
    assert checked == 8


def test_training_targets_without_jitter_are_scaled_ground_truth(sample):
    dataset = build_detection_dataset(sample["train_file_pattern"], 256, True, 2, num_classes=3, seed=1,
                                      jitter_min=1.0, jitter_max=1.0, input_rand_hflip=False)
    anchors = generate_anchors(256)
    eval_set = build_detection_dataset(sample["train_file_pattern"], 128, False, 16, num_classes=3)
    gt = {}
    for _, labels in eval_set:
        for i, source_id in enumerate(labels["source_ids"].numpy()):
            gt[int(source_id)] = labels["groundtruth_boxes"][i, :int(labels["num_groundtruth_boxes"][i])].numpy()
    _, labels = next(iter(dataset))
    assert labels["num_dropped_boxes"].numpy().tolist() == [0, 0]
    np.testing.assert_allclose(labels["image_scales"].numpy(), [0.5, 0.5])
    cls = _flat(labels, "cls", 1)[..., 0]
    codes = _flat(labels, "box", 4)
    for i, source_id in enumerate(labels["source_ids"].numpy()):
        decoded = decode_boxes(codes[i][cls[i] >= 0], anchors[cls[i] >= 0]).numpy()
        expected = gt[int(source_id)] * 2.0
        for box in expected:
            assert np.abs(decoded - box).max(axis=1).min() < 1e-2


def _two_rect_record(height=90, width=150):
    image = np.zeros((height, width, 3), np.uint8)
    image[20:70, 40:120, 0] = 255  # big red rectangle
    image[2:8, 2:10, 1] = 255      # small green rectangle in the corner
    boxes = [(20 / height, 40 / width, 70 / height, 120 / width), (2 / height, 2 / width, 8 / height, 10 / width)]
    encoded = tf.io.encode_png(image).numpy()
    return build_detection_example(encoded, height, width, "5", boxes=boxes, labels=[1, 2],
                                   image_format="png").SerializeToString()


def test_augmentation_keeps_boxes_on_their_objects():
    processor = DetectionExampleProcessor(64, True, 2, AnchorSet.build(64), jitter_min=0.5, jitter_max=2.0)
    data = processor.decode(tf.constant(_two_rect_record()))
    zero = (0.0 - np.array(MEAN_RGB)) / np.array(STDDEV_RGB)
    full = (255.0 - np.array(MEAN_RGB)) / np.array(STDDEV_RGB)
    dropped_seen = 0
    for seed in range(24):
        image, boxes, classes, _, num_dropped, _ = processor.augment(data, tf.constant([seed, 7], tf.int64))
        image, boxes, classes = image.numpy(), boxes.numpy(), classes.numpy().tolist()
        assert image.shape == (64, 64, 3)
        assert int(num_dropped) == 2 - len(classes)
        dropped_seen += int(num_dropped)
        for channel, cls in ((0, 1), (1, 2)):
            # Pixels more than half coloured have their centre inside the object.
            coloured = (image[..., channel] - zero[channel]) / (full[channel] - zero[channel]) > 0.5
            ys, xs = np.nonzero(coloured)
            if cls not in classes:
                assert ys.size == 0, f"seed {seed}: class {cls} dropped but visible"
                continue
            ymin, xmin, ymax, xmax = boxes[classes.index(cls)]
            if min(ymax - ymin, xmax - xmin) < 3:
                continue  # too small after down-scaling to have a mostly coloured pixel
            assert ys.size > 0
            assert np.all((ys + 0.5 >= ymin - 1e-3) & (ys + 0.5 <= ymax + 1e-3))
            assert np.all((xs + 0.5 >= xmin - 1e-3) & (xs + 0.5 <= xmax + 1e-3))
            # ... and the box is tight around them.
            assert ys.min() - ymin < 1.5 and ymax - (ys.max() + 1) < 1.5
            assert xs.min() - xmin < 1.5 and xmax - (xs.max() + 1) < 1.5
    assert dropped_seen > 0  # the corner box was cropped away at least once


def test_flip_mirrors_boxes():
    processor = DetectionExampleProcessor(64, True, 2, AnchorSet.build(64), jitter_min=1.0, jitter_max=1.0)
    data = processor.decode(tf.constant(_two_rect_record()))
    seen = set()
    for seed in range(12):
        _, boxes, classes, _, _, _ = processor.augment(data, tf.constant([seed, 1], tf.int64))
        red = boxes.numpy()[classes.numpy().tolist().index(1)]
        scale = 64 / 150
        if abs(red[1] - 40 * scale) < 1e-3:
            seen.add("plain")
        else:
            np.testing.assert_allclose(red[[1, 3]], [(150 - 120) * scale, (150 - 40) * scale], atol=1e-3)
            seen.add("flipped")
    assert seen == {"plain", "flipped"}


def _batches(dataset, count):
    iterator = iter(dataset)
    return [tf.nest.map_structure(lambda t: t.numpy(), next(iterator)) for _ in range(count)]


def test_deterministic_with_seed(sample):
    def run(seed):
        return _batches(build_detection_dataset(sample["train_file_pattern"], 128, True, 2, num_classes=3,
                                                seed=seed, shuffle_buffer=8), 3)

    first, second, other = run(5), run(5), run(6)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a[0], b[0])
        for key in a[1]:
            np.testing.assert_array_equal(a[1][key], b[1][key])
    assert any(not np.array_equal(a[0], c[0]) for a, c in zip(first, other))
    # Unseeded runs work too (non-deterministic order).
    images, _ = next(iter(build_detection_dataset(sample["train_file_pattern"], 128, True, 2, num_classes=3)))
    assert images.shape == (2, 128, 128, 3)


def _ids(pattern, **kwargs):
    dataset = build_detection_dataset(pattern, 128, False, 4, num_classes=3, **kwargs)
    return [int(i) for _, labels in dataset for i in labels["source_ids"].numpy()]


@pytest.mark.parametrize("num_shards", [2, 3])
def test_sharding_splits_the_data_without_overlap(sample, num_shards):
    files = glob.glob(sample["train_file_pattern"])
    assert len(files) == 2  # 2 workers shard by file, 3 by record
    everything = _ids(sample["train_file_pattern"])
    parts = [_ids(sample["train_file_pattern"], num_shards=num_shards, shard_index=k) for k in range(num_shards)]
    assert sorted(sum(parts, [])) == sorted(everything) == list(range(1, 13))
    assert all(parts)


def _write(path, examples):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example.SerializeToString())


JPEG = tf.io.encode_jpeg(tf.zeros([20, 30, 3], tf.uint8)).numpy()


def _bad_example(case):
    good = dict(encoded=JPEG, height=20, width=30, source_id="77", boxes=[(0.1, 0.1, 0.5, 0.5)], labels=[2],
                filename="img77.jpg")
    if case == "class id":
        good["labels"] = [4]
    elif case == "too many":
        good.update(boxes=[(0.1, 0.1, 0.5, 0.5)] * 4, labels=[1] * 4)
    elif case == "outside":
        good["boxes"] = [(0.1, 0.1, 0.5, 1.2)]
    elif case == "zero size":
        good["boxes"] = [(0.5, 0.1, 0.5, 0.4)]
    elif case == "source id":
        good["source_id"] = "img_77"
    elif case == "not an image":
        good["encoded"] = b"GARBAGE!"
    example = build_detection_example(**good)
    if case == "mismatched counts":
        example.features.feature["image/object/class/label"].int64_list.value.append(1)
    return example


BAD = {
    "class id": "class id outside 1..num_classes",
    "too many": "too many objects",
    "outside": "box outside the image",
    "zero size": "zero/negative size",
    "source id": "source_id is not an integer",
    "not an image": "not a JPEG/PNG/GIF/BMP image",
    "mismatched counts": "mismatched object counts",
}


CASES = [(case, False) for case in sorted(BAD)] + [("class id", True), ("mismatched counts", True)]


@pytest.mark.parametrize("case,is_training", CASES)
def test_bad_records_fail_naming_the_record(tmp_path, case, is_training):
    good = build_detection_example(JPEG, 20, 30, "1", boxes=[(0.1, 0.1, 0.5, 0.5)], labels=[1], filename="ok.jpg")
    _write(tmp_path / "bad.tfrecord", [good, _bad_example(case)])
    dataset = build_detection_dataset(str(tmp_path / "bad.tfrecord"), 64, is_training, 1, num_classes=3,
                                      max_instances_per_image=3, seed=0, repeat=False)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        for _ in dataset:
            pass
    message = str(info.value)
    assert BAD[case] in message, message
    assert "img77.jpg" in message, message


def test_seeds_dataset_gives_pairs():
    seeds = [s.numpy() for s in element_seeds(3).take(2)]
    assert seeds[0].shape == (2,) and not np.array_equal(seeds[0], seeds[1])
