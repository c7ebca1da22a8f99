"""Bad record files give one DatasetError naming the file and the fix, both at
start-up (dataset.record_check.check_record_files) and when they only show up
mid-run (dataset.record_check.explain_data_error), on records written by the
project's own converters (the sample dataset generator)."""
import glob
import logging
import os
import shutil

import pytest
import tensorflow as tf

from dataset.classification_input import build_classification_dataset
from dataset.detection_input import build_detection_dataset
from dataset.errors import DatasetError
from dataset.make_sample_dataset import make_sample_datasets
from dataset.record_check import (check_record_files, explain_data_error, explained_data_errors, locate_record,
                                  scan_record_file)

DETECTION_FIX = "dataset/create_coco_tfrecord.py or dataset/create_pascal_tfrecord.py"
CLASSIFICATION_FIX = "dataset/create_classification_tfrecord.py"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A tiny sample dataset: 2 detection shards of 2 records (64 px), 2
    classification shards of 2 records (32 px)."""
    return make_sample_datasets(str(tmp_path_factory.mktemp("sample")), num_train=4, num_val=2, image_size=64,
                                seed=3, num_shards=2, classification_num_train=4, classification_num_val=2,
                                classification_image_size=32)


@pytest.fixture
def shards(sample):
    def get(key="train_file_pattern"):
        files = sorted(glob.glob(sample[key]))
        assert len(files) == 2
        return files
    return get


def _copy(src, dst, cut=0):
    with open(src, "rb") as handle:
        data = handle.read()
    with open(dst, "wb") as handle:
        handle.write(data[:len(data) - cut])
    return str(dst)


def _detection(files, is_training=False, num_classes=3):
    return build_detection_dataset(files, 64, is_training, 2, num_classes=num_classes, seed=0,
                                   repeat=is_training)


def _error_of(dataset, steps=None):
    """The OpError of reading ``dataset``: by iterating, or inside a tf.function
    train-step-like ``next(iterator)`` for ``steps`` steps (as the runner does)."""
    with pytest.raises(tf.errors.OpError) as info:
        if steps is None:
            for _ in dataset:
                pass
        else:
            iterator = iter(dataset)
            step = tf.function(lambda it: next(it))
            for _ in range(steps):
                step(iterator)
    return info.value


def _one_line(error):
    text = str(error)
    assert "\n" not in text, text
    return text


# ---------------------------------------------------------------- truncated


def test_truncated_shard_is_named_with_its_record(shards, tmp_path):
    good, other = shards()
    cut = _copy(good, tmp_path / "train-00000-of-00002.tfrecord", cut=10)
    # The first record is whole, so the cheap check passes; the full scan finds it.
    check_record_files([cut, other], "detection")
    with pytest.raises(DatasetError) as info:
        check_record_files([cut, other], "detection", full_scan=True)
    text = _one_line(info.value)
    assert cut in text and "is truncated: record 1" in text and "copy it again or re-run the converter" in text

    # Mid-run TF says only "truncated record at <offset>": the file is found.
    error = _error_of(_detection([other, cut]))
    assert isinstance(error, tf.errors.DataLossError) and cut not in error.message
    explained = explain_data_error(error, [other, cut])
    text = _one_line(explained)
    assert text.startswith(f"{cut} is truncated: record 1 (at byte "), text
    assert "(the record before it is fine)" in text and "re-run the converter" in text


def test_truncated_shard_inside_the_train_step(shards, tmp_path):
    good, other = shards()
    cut = _copy(good, tmp_path / "cut.tfrecord", cut=3)
    files = [cut, other]
    error = _error_of(_detection(files, is_training=True), steps=8)
    assert isinstance(error, tf.errors.DataLossError)
    assert cut in str(explain_data_error(error, files))
    # The file list may also be given as a glob.
    assert cut in str(explain_data_error(error, str(tmp_path / "*.tfrecord")))


def test_corrupted_record_data_is_named(shards, tmp_path):
    good, other = shards()
    path = _copy(good, tmp_path / "flipped.tfrecord")
    with open(path, "r+b") as handle:
        handle.seek(100)  # inside record 0's image bytes: its data CRC fails, the framing is intact
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    error = _error_of(_detection([other, path]))
    assert isinstance(error, tf.errors.DataLossError)
    text = _one_line(explain_data_error(error, [other, path]))
    assert text.startswith(f"{path} is corrupted: record 0 (at byte 0) fails its checksum"), text


# ---------------------------------------------------------------- not a TFRecord / empty


def test_jpeg_renamed_to_tfrecord(sample, shards, tmp_path):
    jpeg = sorted(glob.glob(os.path.join(sample["train_image_dir"], "*.jpg")))[0]
    fake = str(tmp_path / "images.tfrecord")
    shutil.copy(jpeg, fake)
    with pytest.raises(DatasetError) as info:
        check_record_files([shards()[0], fake], "detection")
    text = _one_line(info.value)
    assert text == (f"{fake} is not a TFRecord file (it starts like a JPEG image) — point the file pattern at "
                    "the .tfrecord files written by dataset/create_*_tfrecord.py."), text

    error = _error_of(_detection([fake]))
    assert "Is this even a TFRecord file?" in error.message
    assert str(explain_data_error(error, [fake])) == text


def test_compressed_and_stub_files(shards, tmp_path):
    compressed = str(tmp_path / "compressed.tfrecord")
    with tf.io.TFRecordWriter(compressed, options="GZIP") as writer:
        for record in tf.data.TFRecordDataset(shards()[0]):
            writer.write(record.numpy())
    with pytest.raises(DatasetError) as info:
        check_record_files([compressed], "detection")
    assert str(info.value) == (f"{compressed} is GZIP-compressed (TFRecordOptions compression); the input "
                               "pipelines read uncompressed TFRecords — decompress it (gunzip) or re-create it "
                               "without compression.")
    # TF reads a file shorter than one header as zero records, without an error.
    stub = _copy(shards()[0], tmp_path / "stub.tfrecord", cut=os.path.getsize(shards()[0]) - 5)
    with pytest.raises(DatasetError, match=r"stub.tfrecord is truncated: 5 bytes, shorter than one record header"):
        check_record_files([stub], "detection")


def test_zero_byte_files(shards, tmp_path, caplog):
    empty = [str(tmp_path / f"empty-{i}.tfrecord") for i in range(2)]
    for path in empty:
        open(path, "wb").close()
    with caplog.at_level(logging.WARNING, logger="dataset"):
        result = check_record_files(shards() + empty[:1], "detection")
    assert result.empty_files == empty[:1] and result.kinds == {"detection": 2}
    assert "1 of 3 detection record files are empty (0 bytes, no records)" in caplog.text
    assert empty[0] in caplog.text

    with pytest.raises(DatasetError) as info:
        check_record_files(empty, "detection")
    text = _one_line(info.value)
    assert text.startswith("all 2 detection record files are empty (0 bytes, no records): ")
    assert all(path in text for path in empty) and DETECTION_FIX in text

    # With a fixed steps_per_epoch the train step asks for a batch that never comes.
    error = _error_of(_detection(empty, is_training=True), steps=1)
    assert isinstance(error, tf.errors.OutOfRangeError)
    text = _one_line(explain_data_error(error, empty))
    assert text.startswith("the input pipeline ran out of data: the 2 record files hold no records")
    assert all(path in text for path in empty)
    # Data present: the end of the pipeline is not a data problem here.
    assert explain_data_error(error, shards()) is None


# ---------------------------------------------------------------- records of the other task


def test_classification_records_given_to_the_detector(shards):
    files = shards("classification_train_file_pattern")
    with pytest.raises(DatasetError) as info:
        check_record_files(files, "detection")
    text = _one_line(info.value)
    assert text.startswith("2 of 2 detection record files are unusable: ")
    assert f"{files[0]} holds classification records (image/class/label)" in text
    assert text.endswith(f"— detection needs records from {DETECTION_FIX}.")
    with pytest.raises(DatasetError) as info:
        check_record_files(files[:1], "detection")
    assert str(info.value) == (f"{files[0]} holds classification records (image/class/label) — detection needs "
                               f"records from {DETECTION_FIX}.")
    # Mixed in with detection shards, the one bad file is named.
    with pytest.raises(DatasetError, match="1 of 3|holds classification") as info:
        check_record_files(shards() + files[:1], "detection")

    # Without the pre-flight check the parser says what the records are.
    error = _error_of(_detection(files))
    assert "source_id is not an integer" not in error.message
    text = _one_line(explain_data_error(error, files))
    assert "classification record (no image/source_id and no objects) given to the detection pipeline" in text
    assert any(f"in {path} (record " in text for path in files) and DETECTION_FIX in text


def test_detection_records_given_to_the_classifier(shards):
    files = shards()
    with pytest.raises(DatasetError) as info:
        check_record_files(files[1:], "classification")
    assert str(info.value) == (f"{files[1]} holds detection records (image/object/...) — classification needs "
                               f"records from {CLASSIFICATION_FIX}.")
    check_record_files(shards("classification_train_file_pattern"), "classification")

    dataset = build_classification_dataset(files, 32, False, 2, num_classes=4, seed=0)
    error = _error_of(dataset)
    text = _one_line(explain_data_error(error, files))
    assert "no image/class/label (a detection record?)" in text and "outside 0..3" not in text
    assert any(f"in {path} (record " in text for path in files) and CLASSIFICATION_FIX in text


# ---------------------------------------------------------------- record checks mid-run


def test_class_id_above_num_classes_through_the_train_step(shards):
    files = shards()
    error = _error_of(_detection(files, is_training=True, num_classes=1), steps=4)
    assert isinstance(error, tf.errors.InvalidArgumentError)
    text = _one_line(explain_data_error(error, files))
    assert text.startswith("bad record source_id '"), text
    assert "class id outside 1..num_classes: [" in text
    assert "— num_classes=1; fix the record's labels or model.num_classes." in text
    assert any(f"in {path} (record " in text for path in files), text


def test_record_is_named_without_its_file_beyond_the_search_budget(shards):
    files = shards()
    assert locate_record(files, {"image/source_id": "1"}) is not None
    assert locate_record(files, {"image/source_id": "1"}, budget_bytes=10) is None
    assert locate_record(files, {"image/source_id": "12345"}) is None


def test_damaged_image_bytes_name_the_record(tmp_path):
    # The project's own assertion message (input_utils.check_image_bytes), as TF wraps it.
    error = tf.errors.InvalidArgumentError(None, None, (
        "{{function_node __wrapped__IteratorGetNext}} assertion failed: [image/encoded is not a JPEG/PNG/GIF/BMP "
        "image in record] [source_id \\'77\\' file \\'img77.jpg\\'] [- re-create the record with the "
        "dataset/create_*_tfrecord.py converters]\n\t [[{{node Assert/Assert}}]] [Op:IteratorGetNext] name: "))
    text = _one_line(explain_data_error(error, None))
    assert text == ("bad record source_id '77' file 'img77.jpg': image/encoded is not a JPEG/PNG/GIF/BMP image — "
                    "re-create the record with the dataset/create_*_tfrecord.py converters.")


# ---------------------------------------------------------------- not data errors


@pytest.mark.parametrize("error", [
    tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [2,3] vs. [2,4]"),
    tf.errors.InvalidArgumentError(None, None, "assertion failed: [loss is not finite] [nan]"),
    tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"),
    tf.errors.OutOfRangeError(None, None, "End of sequence"),
    ValueError("something else"),
])
def test_other_errors_are_left_alone(shards, error):
    assert explain_data_error(error, shards()) is None


def test_context_manager(shards, tmp_path):
    good, other = shards()
    cut = _copy(good, tmp_path / "cut.tfrecord", cut=10)
    with pytest.raises(DatasetError, match="is truncated") as info:
        with explained_data_errors([cut]):
            for _ in _detection([cut]):
                pass
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(tf.errors.ResourceExhaustedError):
        with explained_data_errors([other]):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM")


def test_first_record_check_reads_one_record_per_file(shards, tmp_path):
    # A good first record followed by garbage passes the cheap check (it reads
    # one record), fails the full scan, and scan_record_file says where.
    good = shards()[0]
    first = scan_record_file(good).offsets[1]
    path = _copy(good, tmp_path / "garbage.tfrecord")
    with open(path, "r+b") as handle:
        handle.seek(first)
        handle.write(b"\x00" * 12)
    assert check_record_files([path], "detection").kinds == {"detection": 1}
    scan = scan_record_file(path)
    assert (scan.problem, scan.problem_offset, scan.num_records) == ("bad_header", first, 1)
    with pytest.raises(DatasetError, match="is corrupted: the header of record 1"):
        check_record_files([path], "detection", full_scan=True)
    assert check_record_files(shards(), "detection", full_scan=True).num_records == 4
