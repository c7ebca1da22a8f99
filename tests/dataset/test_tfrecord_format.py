"""Records use the standard TF Object Detection API / ImageNet layouts."""
import glob

import numpy as np
import pytest
import tensorflow as tf

from dataset.tfrecord_format import (build_classification_example, build_detection_example,
                                     parse_classification_example, parse_detection_example)

# The standard feature spec as other tools write it, spelled out independently of our module.
STANDARD_DETECTION_SPEC = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/source_id": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "image/key/sha256": tf.io.FixedLenFeature([], tf.string),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/class/text": tf.io.VarLenFeature(tf.string),
    "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
    "image/object/area": tf.io.VarLenFeature(tf.float32),
}
STANDARD_CLASSIFICATION_SPEC = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    "image/class/text": tf.io.FixedLenFeature([], tf.string),
}


def test_detection_example_round_trip():
    example = build_detection_example(b"\xff\xd8\xffdata", 10, 20, "7", boxes=[(0.1, 0.2, 0.5, 0.6)],
                                      labels=[3], texts=["cat"], is_crowd=[1], areas=[12.5], filename="a.jpg")
    parsed = parse_detection_example(tf.constant(example.SerializeToString()))
    assert parsed["source_id"].numpy() == b"7"
    assert parsed["height"].numpy() == 10 and parsed["width"].numpy() == 20
    np.testing.assert_allclose([parsed[k].numpy()[0] for k in ("ymin", "xmin", "ymax", "xmax")],
                               [0.1, 0.2, 0.5, 0.6], rtol=1e-6)
    assert parsed["labels"].numpy().tolist() == [3]
    assert parsed["texts"].numpy().tolist() == [b"cat"]
    assert parsed["is_crowd"].numpy().tolist() == [1]
    assert parsed["areas"].numpy().tolist() == [12.5]


def test_converted_detection_records_read_with_plain_parse_single_example(sample):
    files = sorted(glob.glob(sample["val_file_pattern"]))
    assert len(files) == 2
    count = 0
    for record in tf.data.TFRecordDataset(files):
        parsed = tf.io.parse_single_example(record, STANDARD_DETECTION_SPEC)
        image = tf.io.decode_jpeg(parsed["image/encoded"], channels=3)
        assert image.shape[:2] == (parsed["image/height"], parsed["image/width"])
        num = parsed["image/object/class/label"].values.shape[0]
        assert num >= 1
        for key in ("xmin", "ymin", "xmax", "ymax"):
            values = parsed[f"image/object/bbox/{key}"].values.numpy()
            assert values.shape == (num,) and np.all((values >= 0) & (values <= 1))
        assert parsed["image/format"].numpy() == b"jpeg"
        int(parsed["image/source_id"].numpy())
        count += 1
    assert count == 8


def test_classification_records_read_with_plain_parse_single_example(sample):
    labels = []
    for record in tf.data.TFRecordDataset(sorted(glob.glob(sample["classification_val_file_pattern"]))):
        parsed = tf.io.parse_single_example(record, STANDARD_CLASSIFICATION_SPEC)
        tf.io.decode_jpeg(parsed["image/encoded"], channels=3)
        labels.append(int(parsed["image/class/label"]))
        assert parsed["image/class/text"].numpy().decode() == sample["classification_class_names"][labels[-1]]
    assert sorted(set(labels)) == [0, 1, 2, 3]


def test_classification_example_round_trip():
    example = build_classification_example(b"x", 4, "dog", "d.jpg")
    parsed = parse_classification_example(tf.constant(example.SerializeToString()))
    assert int(parsed["label"]) == 4 and parsed["text"].numpy() == b"dog"
