"""Decoding and checking one detection record inside ``tf.data``.

Records may come from other tools, so the pipeline checks each one and fails
with an error that names the record (``image/source_id`` and
``image/filename``) instead of silently truncating or clipping:

* not a classification record (no ``image/source_id`` and no objects: the
  layout of :mod:`dataset.create_classification_tfrecord`);
* ``image/source_id`` must be an integer (COCO evaluation needs it);
* ``image/encoded`` must be a JPEG / PNG / GIF / BMP image;
* the box-coordinate, label, ``is_crowd`` and ``area`` lists must have equal
  lengths (``is_crowd`` / ``area`` may be absent);
* at most ``max_instances_per_image`` objects;
* class ids in ``1 … num_classes``;
* boxes inside the image (normalised coordinates in ``[0, 1]`` up to
  :data:`BOX_TOLERANCE`, which absorbs float rounding and is clipped) with
  positive width and height.

The checks are ``tf.debugging.Assert`` ops: a bad record stops the pipeline
with ``InvalidArgumentError: assertion failed: [<what is wrong> in record]
[<record>] … [- <fix>]``, a layout that
:func:`dataset.record_check.explain_data_error` turns into one line.
The converters run the same checks on their input, with ``--skip_invalid``.
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from dataset.input_utils import check_image_bytes
from dataset.tfrecord_format import BOX_KEYS, parse_detection_example

BOX_TOLERANCE = 1e-3
DETECTION_CONVERTERS = "dataset/create_coco_tfrecord.py or dataset/create_pascal_tfrecord.py"


def _record_name(parsed) -> tf.Tensor:
    return tf.strings.join(["source_id '", parsed["source_id"], "' file '", parsed["filename"], "'"])


def validate_objects(parsed: Dict[str, tf.Tensor], num_classes: int, max_instances_per_image: int) -> list:
    """The assert ops for one parsed record (see the module docstring).

    Args:
        parsed: output of :func:`dataset.tfrecord_format.parse_detection_example`.
        num_classes: largest valid class id.
        max_instances_per_image: largest valid object count.

    Returns:
        A list of ops to use as control dependencies, in check order.
    """
    record = _record_name(parsed)
    num = tf.size(parsed["labels"])
    sizes = tf.stack([tf.size(parsed[k]) for k in BOX_KEYS])
    optional = tf.stack([tf.size(parsed["is_crowd"]), tf.size(parsed["areas"])])
    counts_ok = tf.logical_and(
        tf.reduce_all(tf.equal(sizes, num)),
        tf.reduce_all(tf.logical_or(tf.equal(optional, 0), tf.equal(optional, num))))
    # A classification record (dataset/create_classification_tfrecord.py) has
    # neither an image id nor objects; say so instead of "source_id is not an
    # integer", which sends the user looking at the wrong thing. Exactly one of
    # the two checks can fail.
    no_id = tf.equal(tf.strings.strip(parsed["source_id"]), "")
    looks_like_classification = tf.logical_and(no_id, tf.equal(num + tf.reduce_sum(sizes), 0))
    counts_check = tf.debugging.Assert(counts_ok, [
        "mismatched object counts (label, ymin, xmin, ymax, xmax / is_crowd, area) in record", record,
        num, sizes, optional, "- every per-object list needs one entry per object"])
    checks = [
        tf.debugging.Assert(tf.logical_not(looks_like_classification), [
            "classification record (no image/source_id and no objects) given to the detection pipeline in record",
            record,
            f"- detection needs records from {DETECTION_CONVERTERS}"]),
        tf.debugging.Assert(tf.logical_or(
            looks_like_classification, tf.strings.regex_full_match(parsed["source_id"], r"\s*-?[0-9]+\s*")), [
            "image/source_id is not an integer in record", record,
            "- COCO evaluation needs integer image ids; re-create the records with integer ids"]),
        check_image_bytes(parsed["encoded"], record),
        counts_check,
        tf.debugging.Assert(num <= max_instances_per_image, [
            "too many objects in record", record, num,
            f"- more than max_instances_per_image={max_instances_per_image}; raise "
            "data.max_instances_per_image"]),
    ]
    with tf.control_dependencies([counts_check]):
        labels = tf.identity(parsed["labels"])
    checks.append(tf.debugging.Assert(
        tf.reduce_all(tf.logical_and(labels >= 1, labels <= num_classes)),
        ["class id outside 1..num_classes in record", record, labels,
         f"- num_classes={num_classes}; fix the record's labels or model.num_classes"], summarize=20))
    with tf.control_dependencies([counts_check]):
        ymin, xmin, ymax, xmax = (tf.identity(parsed[k]) for k in BOX_KEYS)
    inside = tf.reduce_all(tf.stack([
        tf.reduce_all(ymin >= -BOX_TOLERANCE), tf.reduce_all(xmin >= -BOX_TOLERANCE),
        tf.reduce_all(ymax <= 1.0 + BOX_TOLERANCE), tf.reduce_all(xmax <= 1.0 + BOX_TOLERANCE),
        tf.reduce_all(ymax > ymin), tf.reduce_all(xmax > xmin)]))
    checks.append(tf.debugging.Assert(inside, [
        "box outside the image or with zero/negative size in record", record,
        "ymin", ymin, "xmin", xmin, "ymax", ymax, "xmax", xmax,
        "- boxes must be normalised (ymin < ymax, xmin < xmax, all in [0, 1])"], summarize=20))
    return checks


def decode_detection_record(serialized: tf.Tensor, num_classes: int,
                            max_instances_per_image: int) -> Dict[str, tf.Tensor]:
    """Parses, checks and decodes one record.

    Args:
        serialized: scalar string.
        num_classes: largest valid class id.
        max_instances_per_image: largest valid object count.

    Returns:
        ``image`` uint8 ``[h, w, 3]``; ``boxes`` float32 ``[M, 4]`` normalised
        ``(ymin, xmin, ymax, xmax)`` clipped to ``[0, 1]``; ``classes`` int32
        ``[M]`` (1-based); ``is_crowd`` bool ``[M]``; ``areas`` float32 ``[M]``
        in original pixels (box areas when the record has none);
        ``source_id`` int64 scalar; ``image_size`` int32 ``[2]`` (h, w).
    """
    parsed = parse_detection_example(serialized)
    checks = validate_objects(parsed, num_classes, max_instances_per_image)
    with tf.control_dependencies(checks):
        image = tf.io.decode_image(parsed["encoded"], channels=3, expand_animations=False)
        boxes = tf.stack([parsed[k] for k in BOX_KEYS], axis=-1)
        source_id = tf.strings.to_number(tf.strings.strip(parsed["source_id"]), tf.int64)
    boxes = tf.clip_by_value(tf.reshape(boxes, [-1, 4]), 0.0, 1.0)
    num = tf.shape(boxes)[0]
    image_size = tf.shape(image)[:2]
    hw = tf.cast(image_size, tf.float32)
    box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) * hw[0] * hw[1]
    areas = parsed["areas"]
    areas = tf.cond(tf.size(areas) > 0, lambda: areas, lambda: box_areas)
    is_crowd = parsed["is_crowd"]
    is_crowd = tf.cond(tf.size(is_crowd) > 0, lambda: is_crowd > 0, lambda: tf.zeros([num], tf.bool))
    out = {
        "image": tf.ensure_shape(image, [None, None, 3]),
        "boxes": boxes,
        "classes": tf.cast(parsed["labels"], tf.int32),
        "is_crowd": tf.reshape(is_crowd, [-1]),
        "areas": tf.reshape(areas, [-1]),
        "source_id": source_id,
        "image_size": image_size,
    }
    with tf.control_dependencies(checks):  # nothing downstream runs on an unchecked record
        return {key: tf.identity(value) for key, value in out.items()}
