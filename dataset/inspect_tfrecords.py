"""Writes a few decoded (and, by default, augmented) records as PNG files with
their boxes and class names drawn, for a person to check a dataset by eye.

Detection records go through the same decoding, checks and augmentation as
training (:mod:`dataset.detection_input`); ``--no_augment`` shows the
evaluation view (resize and pad). Classification records
(``--task classification``) show the training crop/flip/RandAugment and the
label.

Example::

    python -m dataset.inspect_tfrecords --file_pattern 'data/sample/detection/tfrecords/train-*' \\
        --num_classes 3 --label_map data/sample/detection/label_map.json --output_dir /tmp/inspect
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from dataset import input_utils, preprocessing
from dataset.classification_input import ClassificationExampleProcessor
from dataset.detection_input import DetectionExampleProcessor
from efficientdet.anchors import AnchorSet

_COLOURS = [(255, 64, 64), (64, 255, 64), (64, 160, 255), (255, 220, 0), (255, 0, 255), (0, 255, 255)]


def load_names(path: Optional[str]) -> Dict[int, str]:
    """Class names by id from a JSON ``{"name": id}`` or a text file (line i = id i)."""
    if not path:
        return {}
    if path.endswith(".json"):
        with open(path) as handle:
            return {int(v): k for k, v in json.load(handle).items()}
    with open(path) as handle:
        return {i: line.strip() for i, line in enumerate(handle) if line.strip()}


def _to_uint8(image, method):
    image = np.asarray(image, np.float32)
    if method == "scale_128":
        image = image * 128.0 + 128.0
    else:
        image = image * np.array(preprocessing.STDDEV_RGB) + np.array(preprocessing.MEAN_RGB)
    return np.clip(image, 0, 255).astype(np.uint8)


def draw_boxes(image: np.ndarray, boxes, classes, names: Dict[int, str]) -> Image.Image:
    """Draws ``(ymin, xmin, ymax, xmax)`` pixel boxes with class names on a uint8 image."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for box, cls in zip(boxes, classes):
        ymin, xmin, ymax, xmax = (float(v) for v in box)
        colour = _COLOURS[int(cls) % len(_COLOURS)]
        draw.rectangle((xmin, ymin, xmax - 1, ymax - 1), outline=colour, width=2)
        draw.text((xmin + 3, ymin + 2), names.get(int(cls), str(int(cls))), fill=colour)
    return canvas


def inspect_detection(file_pattern, output_dir, num_images=8, image_size=512, num_classes=90,
                      names=None, augment=True, seed=0, max_instances_per_image=100) -> List[str]:
    """Writes ``num_images`` PNGs of detection records; returns their paths."""
    anchors = AnchorSet.build(image_size)
    processor = DetectionExampleProcessor(image_size, augment, num_classes, anchors, max_instances_per_image)

    def view(serialized, seed_pair):
        data = processor.decode(serialized)
        if augment:
            image, boxes, classes, _, _, _ = processor.augment(data, seed_pair)
        else:
            image, scale = preprocessing.preprocess_detection_image(data["image"], processor.image_size)
            hw = tf.cast(data["image_size"], tf.float32)
            boxes, classes = data["boxes"] * tf.concat([hw, hw], 0) / scale, data["classes"]
        return image, boxes, classes, data["source_id"]

    records = input_utils.read_records(file_pattern, False, deterministic=True).take(num_images)
    dataset = tf.data.Dataset.zip((records, input_utils.element_seeds(seed))).map(view)
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for image, boxes, classes, source_id in dataset:
        canvas = draw_boxes(_to_uint8(image, "imagenet_mean_std"), boxes.numpy(), classes.numpy(), names or {})
        path = os.path.join(output_dir, f"detection_{int(source_id)}.png")
        canvas.save(path)
        paths.append(path)
    return paths


def inspect_classification(file_pattern, output_dir, num_images=8, image_size=224, num_classes=1000,
                           names=None, augment=True, seed=0, randaug_magnitude=None) -> List[str]:
    """Writes ``num_images`` PNGs of classification records with their labels."""
    processor = ClassificationExampleProcessor(image_size, augment, num_classes, "scale_128",
                                               randaug_magnitude=randaug_magnitude)
    records = input_utils.read_records(file_pattern, False, deterministic=True).take(num_images)
    dataset = tf.data.Dataset.zip((records, input_utils.element_seeds(seed))).map(processor)
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for index, (image, label) in enumerate(dataset):
        cls = int(np.argmax(label))
        canvas = Image.fromarray(_to_uint8(image, "scale_128"))
        ImageDraw.Draw(canvas).text((4, 4), (names or {}).get(cls, str(cls)), fill=(255, 255, 0))
        path = os.path.join(output_dir, f"classification_{index:03d}.png")
        canvas.save(path)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file_pattern", required=True, help="TFRecord glob.")
    parser.add_argument("--output_dir", required=True, help="Where the PNGs go.")
    parser.add_argument("--task", choices=("detection", "classification"), default="detection")
    parser.add_argument("--num_images", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=None, help="Default 512 (detection) / 224.")
    parser.add_argument("--num_classes", type=int, default=None, help="Default 90 (detection) / 1000.")
    parser.add_argument("--label_map", default=None, help="JSON {name: id} or text file (line i = id i).")
    parser.add_argument("--no_augment", action="store_true", help="Show the evaluation view.")
    parser.add_argument("--randaug_magnitude", type=float, default=None, help="Classification only.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = load_names(args.label_map)
    if args.task == "detection":
        paths = inspect_detection(args.file_pattern, args.output_dir, args.num_images, args.image_size or 512,
                                  args.num_classes or 90, names, not args.no_augment, args.seed)
    else:
        paths = inspect_classification(args.file_pattern, args.output_dir, args.num_images, args.image_size or 224,
                                       args.num_classes or 1000, names, not args.no_augment, args.seed,
                                       args.randaug_magnitude)
    print("\n".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
