"""The built-in sample data: a small synthetic detection dataset and a small
synthetic classification dataset, deterministic from a seed.

Detection: ``circle``, ``square`` and ``triangle`` (ids 1, 2, 3), 1–4 per
image, each 20–50 % of the image side, on noisy striped backgrounds; written as
JPEGs + COCO ``instances_{train,val}.json`` and converted to TFRecords by the
COCO converter (:mod:`dataset.create_coco_tfrecord`), so the sample exercises
the same path as real data. Classification: the same shapes plus ``cross``
(labels 0–3), one per image, in ``<class>/`` folders converted by
:mod:`dataset.create_classification_tfrecord`.

Layout under ``output_dir``::

    sample_dataset.json                parameters + paths (the cache stamp)
    detection/{train,val}/*.jpg        images
    detection/annotations/instances_{train,val}.json
    detection/label_map.json           {"circle": 1, "square": 2, "triangle": 3}
    detection/tfrecords/{train,val}-*-of-*.tfrecord
    classification/{train,val}/<class>/*.jpg
    classification/label_map.txt       circle, square, triangle, cross (labels 0–3)
    classification/tfrecords/{train,val}-*-of-*.tfrecord

:func:`make_sample_datasets` is cached: called again with the same parameters
it returns the existing paths without regenerating. Command line::

    python -m dataset.make_sample_dataset --output_dir data/sample
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import uuid

import numpy as np
from PIL import Image

from dataset.converter_utils import setup_logging, shard_pattern
from dataset.create_classification_tfrecord import convert_classification, write_label_map
from dataset.create_coco_tfrecord import convert_coco
from dataset.synthetic_images import SHAPES, classification_image, detection_image

logger = logging.getLogger("dataset")
FORMAT_VERSION = 2
DETECTION_CLASSES = ("circle", "square", "triangle")
CLASSIFICATION_CLASSES = ("circle", "square", "triangle", "cross")
_STAMP = "sample_dataset.json"


def _save_jpeg(array, path):
    Image.fromarray(array).save(path, format="JPEG", quality=92)


def _write_detection_split(root, split, count, image_size, rng):
    image_dir = os.path.join(root, "detection", split)
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        image, objects = detection_image(rng, image_size, DETECTION_CLASSES)
        image_id = index + 1
        file_name = f"{split}_{image_id:06d}.jpg"
        _save_jpeg(image, os.path.join(image_dir, file_name))
        images.append({"id": image_id, "file_name": file_name, "height": image_size, "width": image_size})
        for cls, bbox, area in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                                "bbox": [float(v) for v in bbox], "area": float(area), "iscrowd": 0})
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(DETECTION_CLASSES)]
    json_path = os.path.join(root, "detection", "annotations", f"instances_{split}.json")
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    with open(json_path, "w") as handle:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, handle)
    return image_dir, json_path


def _write_classification_split(root, split, count, image_size, rng):
    split_dir = os.path.join(root, "classification", split)
    for name in CLASSIFICATION_CLASSES:
        os.makedirs(os.path.join(split_dir, name), exist_ok=True)
    for index in range(count):
        name = CLASSIFICATION_CLASSES[index % len(CLASSIFICATION_CLASSES)]
        _save_jpeg(classification_image(rng, image_size, name), os.path.join(split_dir, name, f"{index:06d}.jpg"))
    return split_dir


def _generate(root, params):
    seed = params["seed"]
    paths = {}
    for offset, split in enumerate(("train", "val")):
        rng = np.random.default_rng([seed, offset])
        image_dir, json_path = _write_detection_split(root, split, params[f"num_{split}"], params["image_size"], rng)
        prefix = os.path.join(root, "detection", "tfrecords", split)
        convert_coco(json_path, image_dir, prefix, num_shards=params["num_shards"], num_classes=len(DETECTION_CLASSES))
        paths[f"{split}_file_pattern"] = shard_pattern(prefix)
        paths[f"{split}_json"] = json_path
        paths[f"{split}_image_dir"] = image_dir
    with open(os.path.join(root, "detection", "label_map.json"), "w") as handle:
        json.dump({n: i + 1 for i, n in enumerate(DETECTION_CLASSES)}, handle)
    # Labels follow CLASSIFICATION_CLASSES, not the alphabetical folder order.
    label_map = os.path.join(root, "classification", "label_map.txt")
    os.makedirs(os.path.dirname(label_map), exist_ok=True)
    write_label_map(label_map, list(CLASSIFICATION_CLASSES))
    for offset, split in enumerate(("train", "val")):
        rng = np.random.default_rng([seed, 10 + offset])
        folder = _write_classification_split(root, split, params[f"classification_num_{split}"],
                                             params["classification_image_size"], rng)
        prefix = os.path.join(root, "classification", "tfrecords", split)
        convert_classification(folder, prefix, num_shards=params["num_shards"], label_map=label_map,
                               output_label_map=label_map, seed=seed)
        paths[f"classification_{split}_file_pattern"] = shard_pattern(prefix)
    paths["classification_label_map"] = label_map
    return paths


def _relocate(paths, old_root, new_root):
    return {k: (os.path.join(new_root, os.path.relpath(v, old_root)) if isinstance(v, str) else v)
            for k, v in paths.items()}


def make_sample_datasets(
    output_dir: str,
    num_train: int = 256,
    num_val: int = 64,
    image_size: int = 256,
    seed: int = 0,
    num_shards: int = 2,
    classification_num_train: int = 256,
    classification_num_val: int = 64,
    classification_image_size: int = 64,
) -> dict:
    """Generates (or reuses) the sample datasets under ``output_dir``.

    Args:
        output_dir: folder to write into (created).
        num_train: detection training images.
        num_val: detection validation images.
        image_size: side of the square detection images.
        seed: everything is a deterministic function of the parameters.
        num_shards: TFRecord files per split.
        classification_num_train: classification training images (spread
            evenly over the 4 classes).
        classification_num_val: classification validation images.
        classification_image_size: side of the classification images.

    Returns:
        A dict of paths and facts: ``train_file_pattern``, ``val_file_pattern``
        (detection TFRecord globs), ``train_json``, ``val_json`` (COCO ground
        truth), ``train_image_dir``, ``val_image_dir``, ``label_map`` (JSON
        name → 1-based id), ``num_classes`` (3), ``class_names``,
        ``image_size``, ``classification_train_file_pattern``,
        ``classification_val_file_pattern``, ``classification_label_map``
        (text, line i = label i), ``classification_num_classes`` (4),
        ``classification_class_names``, ``classification_image_size``, ``root``.
    """
    params = dict(version=FORMAT_VERSION, num_train=num_train, num_val=num_val, image_size=image_size, seed=seed,
                  num_shards=num_shards, classification_num_train=classification_num_train,
                  classification_num_val=classification_num_val,
                  classification_image_size=classification_image_size)
    if min(num_train, num_val, classification_num_train, classification_num_val) < 1 or image_size < 32:
        raise ValueError(f"sample dataset sizes must be >= 1 and image_size >= 32, got {params}.")
    output_dir = os.path.abspath(output_dir)
    stamp = os.path.join(output_dir, _STAMP)
    if os.path.exists(stamp):
        with open(stamp) as handle:
            existing = json.load(handle)
        if existing.get("params") == params:
            logger.info("sample datasets already in %s (same parameters): reusing them", output_dir)
            return existing["paths"]
        logger.info("sample datasets in %s were made with other parameters: regenerating", output_dir)
    os.makedirs(output_dir, exist_ok=True)
    building = os.path.join(output_dir, f".building-{uuid.uuid4().hex[:8]}")
    try:
        paths = _relocate(_generate(building, params), building, output_dir)
        for part in ("detection", "classification"):
            final = os.path.join(output_dir, part)
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(os.path.join(building, part), final)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    paths.update(num_classes=len(DETECTION_CLASSES), class_names=list(DETECTION_CLASSES), image_size=image_size,
                 label_map=os.path.join(output_dir, "detection", "label_map.json"),
                 classification_num_classes=len(CLASSIFICATION_CLASSES),
                 classification_class_names=list(CLASSIFICATION_CLASSES),
                 classification_image_size=classification_image_size, root=output_dir)
    with open(stamp, "w") as handle:
        json.dump({"params": params, "paths": paths}, handle, indent=2)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="Folder to write the sample data into.")
    parser.add_argument("--num_train", type=int, default=256)
    parser.add_argument("--num_val", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_shards", type=int, default=2)
    parser.add_argument("--classification_num_train", type=int, default=256)
    parser.add_argument("--classification_num_val", type=int, default=64)
    parser.add_argument("--classification_image_size", type=int, default=64)
    args = parser.parse_args(argv)
    setup_logging()
    paths = make_sample_datasets(**vars(args))
    print(json.dumps(paths, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
