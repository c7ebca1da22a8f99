"""Classification converter and pipeline: label map, shapes, one-hot, MixUp /
CutMix label sums, RandAugment, determinism, errors naming the record."""
import os

import numpy as np
import pytest
import tensorflow as tf

from dataset import create_classification_tfrecord
from dataset.classification_input import build_classification_dataset
from dataset.create_classification_tfrecord import convert_classification, read_label_map
from dataset.errors import DatasetError
from dataset.mixing import cutmix, mix_batch, mixup
from dataset.randaugment import OP_NAMES, apply_op, randaugment
from dataset.tfrecord_format import build_classification_example, parse_classification_example


def _folder(root, helpers, classes=("b_dog", "a_cat"), per_class=3, extra=None):
    for name in classes:
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            array = np.full((30 + i, 40, 3), 60 * (classes.index(name) + 1), np.uint8)
            mode, fmt = [("RGB", "JPEG"), ("L", "PNG"), ("CMYK", "JPEG")][i % 3]
            with open(os.path.join(root, name, f"{i}.{fmt.lower()}"), "wb") as handle:
                handle.write(helpers.image_bytes(array, fmt, mode))
    for path, data in (extra or {}).items():
        with open(os.path.join(root, path), "wb") as handle:
            handle.write(data)


def test_converter_writes_zero_based_labels_and_label_map(tmp_path, helpers):
    _folder(tmp_path / "train", helpers, extra={"a_cat/notes.txt": b"hello"})
    summary = convert_classification(str(tmp_path / "train"), str(tmp_path / "out/train"), num_shards=2)
    assert summary.class_names == ["a_cat", "b_dog"]
    assert read_label_map(summary.label_map_path) == ["a_cat", "b_dog"]
    assert summary.num_images == 6 and summary.per_class == {"a_cat": 3, "b_dog": 3}
    assert summary.skipped.counts == {"not an image file extension (ignored)": 1}
    assert sum(summary.converted.values()) == 4  # grayscale PNG and CMYK JPEG re-encoded
    labels = {}
    for record in tf.data.TFRecordDataset(summary.paths):
        parsed = parse_classification_example(record)
        assert tf.io.decode_jpeg(parsed["encoded"]).shape[-1] == 3
        labels.setdefault(parsed["text"].numpy().decode(), set()).add(int(parsed["label"]))
    assert labels == {"a_cat": {0}, "b_dog": {1}}


def test_converter_reuses_a_label_map_and_rejects_unknown_folders(tmp_path, helpers):
    _folder(tmp_path / "train", helpers)
    train = convert_classification(str(tmp_path / "train"), str(tmp_path / "train_rec"), num_shards=1)
    _folder(tmp_path / "val", helpers, classes=("b_dog",), per_class=1)
    val = convert_classification(str(tmp_path / "val"), str(tmp_path / "val_rec"), num_shards=1,
                                 label_map=train.label_map_path)
    record = next(iter(tf.data.TFRecordDataset(val.paths)))
    assert int(parse_classification_example(record)["label"]) == 1
    _folder(tmp_path / "val2", helpers, classes=("zebra",), per_class=1)
    with pytest.raises(DatasetError, match=r"class folders \['zebra'\].*not in the label map"):
        convert_classification(str(tmp_path / "val2"), str(tmp_path / "v2"), label_map=train.label_map_path)


def test_converter_undecodable_image_error_and_skip(tmp_path, helpers):
    _folder(tmp_path / "d", helpers, extra={"a_cat/broken.jpg": b"\xff\xd8\xff not really"})
    with pytest.raises(DatasetError, match=r"a_cat/broken\.jpg.*cannot be decoded"):
        convert_classification(str(tmp_path / "d"), str(tmp_path / "o"), num_shards=1)
    summary = convert_classification(str(tmp_path / "d"), str(tmp_path / "o"), num_shards=1, skip_invalid=True)
    assert summary.num_images == 6 and summary.skipped.counts["undecodable image"] == 1
    with pytest.raises(SystemExit):
        create_classification_tfrecord.main(["--help"])
    assert create_classification_tfrecord.main(["--image_dir", str(tmp_path / "none"), "--output_prefix",
                                                str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("size", [48, (40, 56)])
def test_pipeline_shapes_and_one_hot(sample, size):
    for training in (True, False):
        dataset = build_classification_dataset(sample["classification_train_file_pattern"], size, training, 4,
                                               num_classes=4, seed=0)
        images, labels = next(iter(dataset))
        height, width = (size, size) if isinstance(size, int) else size
        assert images.shape == (4, height, width, 3) and images.dtype == tf.float32
        assert labels.shape == (4, 4)
        np.testing.assert_array_equal(labels.numpy().sum(1), np.ones(4))
        assert set(np.unique(labels.numpy())) <= {0.0, 1.0}
        assert -1.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0


def test_eval_labels_match_records_and_progressive_sizes(sample):
    first_file = sorted(tf.io.gfile.glob(sample["classification_val_file_pattern"]))[0]
    expected = [int(parse_classification_example(r)["label"]) for r in tf.data.TFRecordDataset(first_file)]
    for size in (32, 64):  # one pipeline per progressive-resizing stage
        dataset = build_classification_dataset(first_file, size, False, 3, num_classes=4,
                                               preprocessing="imagenet_mean_std", seed=0)
        got = [int(i) for _, labels in dataset for i in np.argmax(labels.numpy(), 1)]
        assert dataset.element_spec[0].shape[1:] == (size, size, 3)
        assert got == expected and len(got) == 4


def test_label_smoothing_and_label_offset(sample):
    dataset = build_classification_dataset(sample["classification_val_file_pattern"], 32, False, 8, num_classes=4,
                                           label_smoothing=0.1)
    _, labels = next(iter(dataset))
    np.testing.assert_allclose(labels.numpy().max(1), 0.925)
    np.testing.assert_allclose(labels.numpy().sum(1), 1.0, rtol=1e-6)
    dataset = build_classification_dataset(sample["classification_val_file_pattern"], 32, False, 8, num_classes=4,
                                           label_offset=-1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside 0..3"):
        for _ in dataset:
            pass


def test_label_out_of_range_names_the_record(tmp_path):
    jpeg = tf.io.encode_jpeg(tf.zeros([8, 8, 3], tf.uint8)).numpy()
    with tf.io.TFRecordWriter(str(tmp_path / "c.tfrecord")) as writer:
        writer.write(build_classification_example(jpeg, 7, "seven", "seven.jpg").SerializeToString())
    dataset = build_classification_dataset(str(tmp_path / "c.tfrecord"), 16, True, 1, num_classes=4, seed=0,
                                           repeat=False)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        for _ in dataset:
            pass
    assert "seven.jpg" in str(info.value) and "outside 0..3" in str(info.value)


def test_mixup_and_cutmix_labels_sum_to_one_and_match_pixels():
    images = tf.concat([tf.zeros([2, 16, 16, 3]), tf.ones([2, 16, 16, 3])], 0)
    labels = tf.one_hot([0, 1, 2, 3], 4)
    seed = tf.constant([1, 2], tf.int64)
    for fn, alpha in ((mixup, 0.4), (cutmix, 1.0)):
        mixed, mixed_labels = fn(images, labels, alpha, seed)
        np.testing.assert_allclose(mixed_labels.numpy().sum(1), 1.0, rtol=1e-6)
        # Image i is mixed with image 3 - i: the share of ones equals the partner's label weight.
        ones_share = mixed.numpy().mean(axis=(1, 2, 3))
        partner = mixed_labels.numpy()[np.arange(4), 3 - np.arange(4)]
        own = mixed_labels.numpy()[np.arange(4), np.arange(4)]
        np.testing.assert_allclose(np.where(np.arange(4) < 2, ones_share, 1 - ones_share), partner, atol=1e-5)
        np.testing.assert_allclose(own + partner, 1.0, rtol=1e-6)
    both, both_labels = mix_batch(images, labels, 0.2, 1.0, seed)
    assert both.shape == images.shape and both_labels.shape == labels.shape


def test_pipeline_with_mixing_and_randaugment_is_deterministic(sample):
    def run(seed):
        dataset = build_classification_dataset(sample["classification_train_file_pattern"], 48, True, 4,
                                               num_classes=4, seed=seed, randaug_magnitude=15, mixup_alpha=0.2,
                                               cutmix_alpha=1.0)
        iterator = iter(dataset)
        return [tuple(t.numpy() for t in next(iterator)) for _ in range(3)]

    # (That another seed gives other batches is checked by the detection and RandAugment tests.)
    first, second = run(1), run(1)
    for (a_images, a_labels), (b_images, b_labels) in zip(first, second):
        np.testing.assert_array_equal(a_images, b_images)
        np.testing.assert_array_equal(a_labels, b_labels)
        np.testing.assert_allclose(a_labels.sum(1), 1.0, rtol=1e-5)
    assert any(np.any((labels > 0) & (labels < 1)) for _, labels in first)  # something was mixed


@pytest.mark.parametrize("index", range(len(OP_NAMES)))
def test_each_randaugment_op_keeps_shape_and_range(index):
    image = tf.cast(tf.random.stateless_uniform([24, 32, 3], [0, index], 0, 256, tf.int32), tf.uint8)
    out = apply_op(image, index, 15.0, -1.0)
    assert out.shape == (24, 32, 3) and out.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0
    if OP_NAMES[index] not in ("AutoContrast", "Equalize"):  # noise is already spread over 0..255
        assert not np.array_equal(out.numpy(), tf.cast(image, tf.float32).numpy()), OP_NAMES[index]


def test_randaugment_is_deterministic_per_seed():
    image = tf.cast(tf.random.stateless_uniform([16, 16, 3], [3, 4], 0, 256, tf.int32), tf.uint8)
    a = randaugment(image, 10, 2, tf.constant([5, 6], tf.int64))
    b = randaugment(image, 10, 2, tf.constant([5, 6], tf.int64))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert any(not np.array_equal(a.numpy(), randaugment(image, 10, 2, tf.constant([s, 6], tf.int64)).numpy())
               for s in range(6, 10))
