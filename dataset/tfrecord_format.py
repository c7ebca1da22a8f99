"""TFRecord layouts: the TF Object Detection API detection layout and the
ImageNet-style classification layout.

Detection records use the feature keys of the TensorFlow Object Detection API
(also read and written by google/automl and NVIDIA's EfficientDet), so records
made by other tools in that format read here too:

====================================  ========  =====================================
key                                   type      meaning
====================================  ========  =====================================
``image/encoded``                     bytes     JPEG (or PNG) file contents
``image/format``                      bytes     ``jpeg`` / ``png``
``image/height``, ``image/width``     int64     decoded image size in pixels
``image/source_id``                   bytes     integer image id as text (COCO id)
``image/filename``                    bytes     original file name
``image/key/sha256``                  bytes     hash of ``image/encoded``
``image/object/bbox/{ymin,xmin,...}`` float[]   box corners, normalised to [0, 1]
``image/object/class/label``          int64[]   **1-based** class id
``image/object/class/text``           bytes[]   class name
``image/object/is_crowd``             int64[]   COCO ``iscrowd`` flag
``image/object/area``                 float[]   COCO ``area`` in original pixels
``image/object/difficult``            int64[]   PASCAL VOC ``difficult`` flag
====================================  ========  =====================================

Classification records use the layout of the ImageNet TFRecords of the
TF models / TPU repositories: ``image/encoded``, ``image/format``,
``image/class/label`` (int64) and ``image/class/text``. **Labels here are
0-based** (``0 … num_classes - 1``); some published ImageNet records are 1-based
with 1001 classes (index 0 = "background"): convert those with
``label_offset=-1`` in :func:`dataset.classification_input.build_classification_dataset`.

The ``build_*`` functions make ``tf.train.Example`` protos from Python values;
the ``parse_*`` functions are graph-mode and run inside ``tf.data``.
"""
from __future__ import annotations

import hashlib
from typing import Dict, Optional, Sequence

import tensorflow as tf

BOX_KEYS = ("ymin", "xmin", "ymax", "xmax")

DETECTION_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string),
    "image/format": tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
    "image/height": tf.io.FixedLenFeature((), tf.int64, default_value=-1),
    "image/width": tf.io.FixedLenFeature((), tf.int64, default_value=-1),
    "image/source_id": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/filename": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/class/text": tf.io.VarLenFeature(tf.string),
    "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
    "image/object/area": tf.io.VarLenFeature(tf.float32),
}

CLASSIFICATION_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string),
    "image/format": tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
    "image/class/label": tf.io.FixedLenFeature((), tf.int64, default_value=-1),
    "image/class/text": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/filename": tf.io.FixedLenFeature((), tf.string, default_value=""),
}


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def build_detection_example(
    encoded: bytes,
    height: int,
    width: int,
    source_id: str,
    boxes: Sequence[Sequence[float]] = (),
    labels: Sequence[int] = (),
    texts: Optional[Sequence[str]] = None,
    is_crowd: Optional[Sequence[int]] = None,
    areas: Optional[Sequence[float]] = None,
    difficult: Optional[Sequence[int]] = None,
    filename: str = "",
    image_format: str = "jpeg",
) -> tf.train.Example:
    """Makes one detection ``tf.train.Example``.

    Args:
        encoded: encoded image bytes.
        height: image height in pixels.
        width: image width in pixels.
        source_id: the image id, an integer as text (e.g. ``"139"``).
        boxes: ``[M, 4]`` normalised ``(ymin, xmin, ymax, xmax)``.
        labels: ``[M]`` 1-based class ids.
        texts: optional ``[M]`` class names.
        is_crowd: optional ``[M]`` 0/1 flags (written as zeros if absent).
        areas: optional ``[M]`` areas in original-image pixels (written as box
            areas if absent).
        difficult: optional ``[M]`` VOC difficult flags (not written if absent).
        filename: original file name.
        image_format: ``"jpeg"`` or ``"png"``.

    Returns:
        The example; ``serialize_to_string()`` gives the record.
    """
    boxes = [tuple(float(c) for c in box) for box in boxes]
    num = len(boxes)
    if is_crowd is None:
        is_crowd = [0] * num
    if areas is None:
        areas = [(b[2] - b[0]) * height * (b[3] - b[1]) * width for b in boxes]
    feature = {
        "image/encoded": _bytes([encoded]),
        "image/format": _bytes([image_format]),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/source_id": _bytes([str(source_id)]),
        "image/filename": _bytes([filename]),
        "image/key/sha256": _bytes([hashlib.sha256(encoded).hexdigest()]),
        "image/object/class/label": _ints(labels),
        "image/object/class/text": _bytes(texts or []),
        "image/object/is_crowd": _ints(is_crowd),
        "image/object/area": _floats(areas),
    }
    for index, key in enumerate(BOX_KEYS):
        feature[f"image/object/bbox/{key}"] = _floats([b[index] for b in boxes])
    if difficult is not None:
        feature["image/object/difficult"] = _ints(difficult)
    return tf.train.Example(features=tf.train.Features(feature=feature))


def build_classification_example(
    encoded: bytes,
    label: int,
    text: str = "",
    filename: str = "",
    image_format: str = "jpeg",
    height: Optional[int] = None,
    width: Optional[int] = None,
) -> tf.train.Example:
    """Makes one classification ``tf.train.Example`` (0-based ``label``)."""
    feature = {
        "image/encoded": _bytes([encoded]),
        "image/format": _bytes([image_format]),
        "image/class/label": _ints([label]),
        "image/class/text": _bytes([text]),
        "image/filename": _bytes([filename]),
    }
    if height is not None and width is not None:
        feature["image/height"] = _ints([height])
        feature["image/width"] = _ints([width])
    return tf.train.Example(features=tf.train.Features(feature=feature))


def parse_detection_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Parses one serialized detection record (graph mode).

    Args:
        serialized: scalar string tensor.

    Returns:
        A dict: ``encoded``, ``format``, ``source_id``, ``filename`` (scalar
        strings), ``height``, ``width`` (int64 scalars, -1 when absent), and the
        per-object lists ``ymin``, ``xmin``, ``ymax``, ``xmax`` (float32
        ``[M_k]``), ``labels`` (int64), ``texts`` (string), ``is_crowd``
        (int64), ``areas`` (float32). The lists are returned as parsed and may
        differ in length in a bad record; see
        :func:`dataset.detection_parser.validate_objects`.
    """
    parsed = tf.io.parse_single_example(serialized, DETECTION_FEATURES)
    out = {
        "encoded": parsed["image/encoded"],
        "format": parsed["image/format"],
        "source_id": parsed["image/source_id"],
        "filename": parsed["image/filename"],
        "height": parsed["image/height"],
        "width": parsed["image/width"],
        "labels": tf.sparse.to_dense(parsed["image/object/class/label"]),
        "texts": tf.sparse.to_dense(parsed["image/object/class/text"], default_value=""),
        "is_crowd": tf.sparse.to_dense(parsed["image/object/is_crowd"]),
        "areas": tf.sparse.to_dense(parsed["image/object/area"]),
    }
    for key in BOX_KEYS:
        out[key] = tf.sparse.to_dense(parsed[f"image/object/bbox/{key}"])
    return out


def parse_classification_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Parses one serialized classification record (graph mode).

    Returns:
        ``encoded``, ``format``, ``text``, ``filename`` (scalar strings) and
        ``label`` (int64 scalar, -1 when the record has none).
    """
    parsed = tf.io.parse_single_example(serialized, CLASSIFICATION_FEATURES)
    return {
        "encoded": parsed["image/encoded"],
        "format": parsed["image/format"],
        "label": parsed["image/class/label"],
        "text": parsed["image/class/text"],
        "filename": parsed["image/filename"],
    }
