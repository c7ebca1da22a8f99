"""Converts PASCAL VOC annotations (XML folders) to sharded TFRecords plus a
COCO-style ground-truth JSON, so VOC can be evaluated with COCO metrics.

Reads ``{data_dir}/{year}/ImageSets/Main/{set}.txt``, ``Annotations/*.xml`` and
``JPEGImages/`` of a VOCdevkit (``--year VOC2007``, ``VOC2012`` or ``merged``
for both). ``--set all`` takes every XML file in ``Annotations/`` (for custom
datasets in VOC format, together with ``--label_map_json``).

* Classes: the 20 VOC classes in their usual order (``aeroplane`` = 1 …
  ``tvmonitor`` = 20), or ``--label_map_json`` (``{"name": id}`` with 1-based
  ids, or a list of names in id order).
* Boxes: the XML pixel corners are used as written (as the official
  converters do), ``(xmin, ymin, xmax, ymax)``.
* ``difficult`` objects are kept as ordinary objects and also written to
  ``image/object/difficult``; ``--ignore_difficult_instances`` leaves them out
  (counted in the report).
* Images are numbered 1, 2, … in list order: that number is the record's
  ``image/source_id`` and the JSON's image id.

Example::

    python -m dataset.create_pascal_tfrecord --data_dir VOCdevkit --year VOC2012 \\
        --set val --output_prefix data/voc/val --num_shards 8
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
import xml.etree.ElementTree as ElementTree
from typing import Dict, List, Optional, Sequence

from dataset.converter_utils import add_common_flags, check_output_path, run_conversion, setup_logging
from dataset.detection_records import (ConversionSummary, DetectionObject, ImageTask,
                                       ValidationSettings, describe_detection_summary, write_detection_tfrecords)
from dataset.errors import DatasetError

logger = logging.getLogger("dataset")

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def load_label_map(path: Optional[str]) -> Dict[str, int]:
    """``{class name: 1-based id}`` from a JSON file, or the 20 VOC classes."""
    if path is None:
        return {name: i + 1 for i, name in enumerate(VOC_CLASSES)}
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"cannot read label map {path!r}: {error}.") from error
    if isinstance(data, list):
        return {str(name): i + 1 for i, name in enumerate(data)}
    if isinstance(data, dict) and all(isinstance(v, int) for v in data.values()):
        return {str(k): int(v) for k, v in data.items()}
    raise DatasetError(f"label map {path!r} must be a JSON object {{\"name\": id}} with 1-based ids "
                       "or a JSON list of names in id order.")


def _text(node, tag, xml_path, required=True):
    child = node.find(tag)
    if child is None or child.text is None:
        if required:
            raise DatasetError(f"{xml_path}: missing <{tag}>; is this a PASCAL VOC annotation file?")
        return None
    return child.text.strip()


def parse_voc_xml(xml_path: str) -> dict:
    """Reads one VOC annotation file.

    Returns:
        ``{"filename", "size": (height, width) or None, "objects": [{"name",
        "difficult", "box": (xmin, ymin, xmax, ymax)}]}``.
    """
    try:
        root = ElementTree.parse(xml_path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise DatasetError(f"cannot read VOC annotation {xml_path!r}: {error}.") from error
    size = None
    size_node = root.find("size")
    if size_node is not None:
        height = int(float(_text(size_node, "height", xml_path)))
        width = int(float(_text(size_node, "width", xml_path)))
        size = (height, width) if height > 0 and width > 0 else None
    objects = []
    for index, obj in enumerate(root.findall("object")):
        box = obj.find("bndbox")
        if box is None:
            raise DatasetError(f"{xml_path}: object {index} has no <bndbox>.")
        try:
            coords = tuple(float(_text(box, key, xml_path)) for key in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as error:
            raise DatasetError(f"{xml_path}: object {index} has a non-numeric box ({error}).") from None
        objects.append({
            "name": _text(obj, "name", xml_path),
            "difficult": int(_text(obj, "difficult", xml_path, required=False) or 0),
            "box": coords,
        })
    return {"filename": _text(root, "filename", xml_path, required=False), "size": size, "objects": objects}


def _image_ids(voc_dir: str, split: str) -> List[str]:
    if split == "all":
        annotations_dir = os.path.join(voc_dir, "Annotations")
        if not os.path.isdir(annotations_dir):
            raise DatasetError(f"{annotations_dir!r} is not a folder; check --data_dir/--year (it must hold "
                               "Annotations/*.xml for --set all).")
        return sorted(os.path.splitext(os.path.basename(p))[0]
                      for p in glob.glob(os.path.join(voc_dir, "Annotations", "*.xml")))
    list_path = os.path.join(voc_dir, "ImageSets", "Main", f"{split}.txt")
    try:
        with open(list_path) as handle:
            return [line.split()[0] for line in handle if line.strip()]
    except OSError as error:
        raise DatasetError(f"cannot read the image list {list_path!r} ({error.strerror}); check "
                           "--data_dir/--year/--set, or use --set all.") from error


def voc_tasks(
    data_dir: str,
    years: Sequence[str],
    split: str,
    label_map: Dict[str, int],
    ignore_difficult: bool = False,
    skip_invalid: bool = False,
) -> tuple:
    """Image tasks of a VOC split.

    Returns:
        ``(tasks, left_out)`` where ``left_out`` lists ``(reason, item)`` of
        objects removed before conversion (unknown class names with
        ``skip_invalid``, difficult objects with ``ignore_difficult``).

    Raises:
        DatasetError: unknown class name (without ``skip_invalid``), missing files.
    """
    tasks, left_out = [], []
    for year in years:
        voc_dir = os.path.join(data_dir, year) if year else data_dir
        for image_id in _image_ids(voc_dir, split):
            xml_path = os.path.join(voc_dir, "Annotations", f"{image_id}.xml")
            ann = parse_voc_xml(xml_path)
            filename = ann["filename"] or f"{image_id}.jpg"
            image_path = os.path.join(voc_dir, "JPEGImages", filename)
            fallback = os.path.join(voc_dir, "JPEGImages", f"{image_id}.jpg")
            if not os.path.exists(image_path) and os.path.exists(fallback):
                filename, image_path = f"{image_id}.jpg", fallback
            source_id = len(tasks) + 1
            context = f"{xml_path} (image {filename}, id {source_id})"
            objects = []
            for index, obj in enumerate(ann["objects"]):
                item = f"{xml_path}, object {index} ({obj['name']!r})"
                if obj["name"] not in label_map:
                    if not skip_invalid:
                        raise DatasetError(f"{item}: class name {obj['name']!r} is not in the label map "
                                           f"({', '.join(sorted(label_map))}); pass --label_map_json "
                                           "with every class, or --skip_invalid.")
                    left_out.append(("class name not in the label map", item))
                    continue
                if ignore_difficult and obj["difficult"]:
                    left_out.append(("difficult object (--ignore_difficult_instances)", item))
                    continue
                objects.append(DetectionObject(box=obj["box"], label=label_map[obj["name"]], text=obj["name"],
                                               difficult=obj["difficult"], ref=str(index)))
            tasks.append(ImageTask(image_path, source_id, filename, objects, ann["size"], context))
    return tasks, left_out


def coco_ground_truth(summary: ConversionSummary, label_map: Dict[str, int]) -> dict:
    """A COCO-style ground-truth dict of exactly the images and objects written."""
    images, annotations = [], []
    for result in summary.results:
        images.append({"id": result.source_id, "file_name": result.filename,
                       "height": result.height, "width": result.width})
        for obj in result.objects:
            xmin, ymin, xmax, ymax = obj.box
            annotations.append({
                "id": len(annotations) + 1, "image_id": result.source_id, "category_id": obj.label,
                "bbox": [xmin, ymin, xmax - xmin, ymax - ymin], "area": (xmax - xmin) * (ymax - ymin),
                "iscrowd": 0, "ignore": 0, "segmentation": [],
            })
    categories = [{"id": i, "name": n, "supercategory": "none"}
                  for n, i in sorted(label_map.items(), key=lambda item: item[1])]
    return {"images": images, "annotations": annotations, "categories": categories}


def convert_pascal(
    data_dir: str,
    output_prefix: str,
    years: Sequence[str] = ("VOC2012",),
    split: str = "train",
    output_json: Optional[str] = None,
    label_map_json: Optional[str] = None,
    num_shards: int = 8,
    ignore_difficult_instances: bool = False,
    max_instances_per_image: int = 100,
    skip_invalid: bool = False,
    box_tolerance_px: float = 1.0,
    num_workers: int = 1,
) -> ConversionSummary:
    """Converts a VOC split to ``{output_prefix}-*-of-*.tfrecord`` and a COCO JSON.

    Args:
        data_dir: VOCdevkit folder (holding ``VOC2007`` / ``VOC2012``), or one
            VOC folder when ``years`` is ``("",)``.
        output_prefix: output path prefix.
        years: sub-folders to read.
        split: ``train``, ``val``, ``trainval``, ``test`` or ``all``.
        output_json: COCO ground-truth path; default ``{output_prefix}_coco_gt.json``.
        label_map_json: optional label map (module docstring).
        num_shards: number of TFRecord files.
        ignore_difficult_instances: leave difficult objects out.
        max_instances_per_image, skip_invalid, box_tolerance_px, num_workers:
            see :mod:`dataset.detection_records`.

    Returns:
        The :class:`~dataset.detection_records.ConversionSummary`; its
        ``skipped`` report includes objects left out before conversion.

    Raises:
        DatasetError: unreadable inputs, invalid data (without ``skip_invalid``)
            or an output that cannot be written; nothing is written then, and
            earlier shards and JSON at the same paths are left as they were.
    """
    check_output_path(output_prefix, "--output_prefix")
    output_json = output_json or f"{output_prefix}_coco_gt.json"
    check_output_path(output_json, "--output_json", example="coco_gt.json")
    if not os.path.isdir(data_dir):
        raise DatasetError(f"--data_dir {data_dir!r} is not a folder; pass the VOCdevkit folder.")
    label_map = load_label_map(label_map_json)
    tasks, left_out = voc_tasks(data_dir, years, split, label_map, ignore_difficult_instances, skip_invalid)
    settings = ValidationSettings(max(label_map.values()), max_instances_per_image, box_tolerance_px, skip_invalid)
    # The ground truth is committed together with the shards, so the two always describe the same images.
    summary = write_detection_tfrecords(
        tasks, output_prefix, num_shards, settings, num_workers, keep_results=True,
        side_files={output_json: lambda written: json.dumps(coco_ground_truth(written, label_map))})
    summary.skipped.merge(left_out)
    if left_out:
        logger.warning("%s", summary.skipped.summary("left out (VOC)"))
    logger.info("wrote COCO-style ground truth %s", output_json)
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="VOCdevkit folder.")
    parser.add_argument("--year", default="VOC2012",
                        help="VOC2007, VOC2012, merged (both), or '' if --data_dir is one VOC folder.")
    parser.add_argument("--set", default="train", help="train, val, trainval, test or all.")
    parser.add_argument("--output_prefix", required=True, help="Output path prefix.")
    parser.add_argument("--output_json", default=None,
                        help="COCO-style ground truth (default PREFIX_coco_gt.json).")
    parser.add_argument("--label_map_json", default=None, help="Class names → 1-based ids (default: VOC's 20).")
    parser.add_argument("--ignore_difficult_instances", action="store_true",
                        help="Leave out objects marked difficult.")
    add_common_flags(parser)
    args = parser.parse_args(argv)
    setup_logging()
    years = ["VOC2007", "VOC2012"] if args.year == "merged" else [y for y in args.year.split(",")]
    return run_conversion(
        lambda: convert_pascal(args.data_dir, args.output_prefix, years, args.set, args.output_json,
                               args.label_map_json, args.num_shards, args.ignore_difficult_instances,
                               args.max_instances_per_image, args.skip_invalid, args.box_tolerance_px,
                               args.num_workers),
        args.report_json, describe_detection_summary)


if __name__ == "__main__":
    sys.exit(main())
