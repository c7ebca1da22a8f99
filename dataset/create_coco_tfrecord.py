"""Converts COCO detection annotations to sharded TFRecords.

Reads a COCO ``instances_*.json`` (or an ``image_info_test*.json``, which has
no annotations) and its image folder and writes records in the TF Object
Detection API layout (:mod:`dataset.tfrecord_format`). As in the official
converters, COCO category ids are kept as the class labels (1 … 90 for COCO,
with gaps), ``iscrowd`` and ``area`` are carried, and every image of the JSON
is written, also images without annotations (evaluation needs them).

Example::

    python -m dataset.create_coco_tfrecord \\
        --annotations_json data/coco/annotations/instances_val2017.json \\
        --image_dir data/coco/val2017 --output_prefix data/coco/val --num_shards 32

Validation and ``--skip_invalid`` are described in :mod:`dataset.detection_records`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import List, Optional, Tuple

from dataset.converter_utils import add_common_flags, check_output_path, run_conversion, setup_logging
from dataset.detection_records import (ConversionSummary, DetectionObject, ImageTask, ValidationSettings,
                                       describe_detection_summary, write_detection_tfrecords)
from dataset.errors import DatasetError

logger = logging.getLogger("dataset")


def load_coco_json(path: str) -> dict:
    """Reads a COCO JSON file, with clear errors for a missing or malformed file."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except OSError as error:
        raise DatasetError(f"cannot read COCO annotations {path!r}: {error.strerror or error}; "
                           "check --annotations_json.") from error
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path!r} is not valid JSON ({error}); is it a COCO annotation file?") from error
    if not isinstance(data, dict) or "images" not in data:
        raise DatasetError(f"{path!r} has no 'images' list; expected a COCO instances_*.json or "
                           "image_info_*.json file.")
    return data


def coco_tasks(data: dict, image_dir: str, json_name: str = "annotations") -> Tuple[List[ImageTask], dict]:
    """Turns COCO JSON content into image tasks.

    Args:
        data: the parsed JSON.
        image_dir: folder holding the ``file_name`` of every image.
        json_name: names the JSON in messages.

    Returns:
        ``(tasks, categories)`` with ``categories`` mapping id → name.

    Raises:
        DatasetError: duplicate image ids, an annotation pointing at an unknown
            image, or a malformed entry.
    """
    categories = {int(c["id"]): str(c.get("name", "")) for c in data.get("categories", [])}
    tasks, by_id = [], {}
    for image in data["images"]:
        try:
            image_id, file_name = image["id"], image["file_name"]
        except KeyError as error:
            raise DatasetError(f"{json_name}: image entry {image!r} has no {error.args[0]!r} field.") from None
        if image_id in by_id:
            raise DatasetError(f"{json_name}: image id {image_id!r} appears twice in 'images'; "
                               "image ids must be unique.")
        size = None
        if image.get("height") and image.get("width"):
            size = (int(image["height"]), int(image["width"]))
        task = ImageTask(
            image_path=os.path.join(image_dir, file_name),
            source_id=image_id,
            filename=file_name,
            objects=[],
            declared_size=size,
            context=f"{json_name}: image id {image_id} ({file_name})",
        )
        by_id[image_id] = task
        tasks.append(task)
    for ann in data.get("annotations", []):
        image_id = ann.get("image_id")
        if image_id not in by_id:
            raise DatasetError(f"{json_name}: annotation id {ann.get('id')} refers to image id "
                               f"{image_id!r}, which is not in 'images'.")
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
            label = int(ann["category_id"])
        except (KeyError, TypeError, ValueError) as error:
            raise DatasetError(f"{json_name}: annotation id {ann.get('id')} (image id {image_id}) "
                               f"has no valid 'bbox' [x, y, w, h] or 'category_id' ({error}).") from None
        by_id[image_id].objects.append(DetectionObject(
            box=(x, y, x + w, y + h),
            label=label,
            text=categories.get(label, ""),
            is_crowd=int(ann.get("iscrowd", 0)),
            area=float(ann["area"]) if "area" in ann else None,
            ref=f"annotation id {ann.get('id')}",
        ))
    return tasks, categories


def convert_coco(
    annotations_json: str,
    image_dir: str,
    output_prefix: str,
    num_shards: int = 8,
    num_classes: Optional[int] = None,
    max_instances_per_image: int = 100,
    skip_invalid: bool = False,
    box_tolerance_px: float = 1.0,
    num_workers: int = 1,
) -> ConversionSummary:
    """Converts one COCO JSON + image folder to ``{output_prefix}-*-of-*.tfrecord``.

    Args:
        annotations_json: ``instances_*.json`` or ``image_info_test*.json``.
        image_dir: the image folder.
        output_prefix: output path prefix.
        num_shards: number of TFRecord files.
        num_classes: largest valid class id; default the largest category id
            of the JSON (90 for COCO).
        max_instances_per_image: more objects in one image is invalid.
        skip_invalid: leave invalid images/objects out (counted) instead of raising.
        box_tolerance_px: overshoot that is clipped instead of rejected.
        num_workers: decoding processes.

    Returns:
        The :class:`~dataset.detection_records.ConversionSummary`.

    Raises:
        DatasetError: unreadable inputs, invalid data (without ``skip_invalid``)
            or an output that cannot be written; nothing is written then and an
            earlier output at ``output_prefix`` is left as it was.
    """
    check_output_path(output_prefix, "--output_prefix")
    if not os.path.isdir(image_dir):
        raise DatasetError(f"--image_dir {image_dir!r} is not a folder; pass the folder that holds the "
                           f"images of {annotations_json!r}.")
    data = load_coco_json(annotations_json)
    tasks, categories = coco_tasks(data, image_dir, os.path.basename(annotations_json))
    if num_classes is None:
        num_classes = max(categories) if categories else 1
    settings = ValidationSettings(num_classes, max_instances_per_image, box_tolerance_px, skip_invalid)
    return write_detection_tfrecords(tasks, output_prefix, num_shards, settings, num_workers)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations_json", required=True,
                        help="COCO instances_*.json, or image_info_test*.json (no boxes).")
    parser.add_argument("--image_dir", required=True, help="Folder with the images of the JSON.")
    parser.add_argument("--output_prefix", required=True,
                        help="Output path prefix; files are PREFIX-00000-of-0000N.tfrecord.")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="Largest valid category id (default: largest id in the JSON, 90 for COCO).")
    add_common_flags(parser)
    args = parser.parse_args(argv)
    setup_logging()
    return run_conversion(
        lambda: convert_coco(args.annotations_json, args.image_dir, args.output_prefix,
                             args.num_shards, args.num_classes, args.max_instances_per_image,
                             args.skip_invalid, args.box_tolerance_px, args.num_workers),
        args.report_json, describe_detection_summary)


if __name__ == "__main__":
    sys.exit(main())
