"""Writes a few decoded (and, by default, augmented) records as PNG files with
their boxes and class names drawn, for a person to check a dataset by eye.

Detection records go through the same decoding, checks, augmentation and
anchor assignment as training (:mod:`dataset.detection_input`), with the
anchors of the detector the config names (``--model_name`` / ``--config`` /
``--hparams``, resolved by :func:`common.config.load_config`; ``--image_size``
and ``--num_classes`` are shortcuts for ``model.image_size`` /
``model.num_classes``), so a D1 at 640 or a non-square input is shown with its
own geometry; ``--no_augment`` shows the evaluation view (resize and pad).
Classification records (``--task classification``) show the training
crop/flip/RandAugment and the label.

Resolving a detector config needs the model families registered, so detection
runs through the EfficientDet entry point (which registers its family and calls
:func:`main`)::

    python -m efficientdet.inspect_tfrecords --file_pattern 'data/sample/detection/tfrecords/train-*' \\
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

from common.config import ConfigError, load_config
from common.detection.anchors import AnchorSet
from common.detection.target_assigner import TargetAssigner
from dataset import input_utils, preprocessing
from dataset.classification_input import ClassificationExampleProcessor
from dataset.detection_input import DetectionExampleProcessor

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


def detection_processor(model_config=None, image_size=512, num_classes=90, augment=True,
                        max_instances_per_image=100) -> DetectionExampleProcessor:
    """The record processor the inspector uses, with the detector's own anchors.

    Args:
        model_config: a detector model config (``image_size``, ``num_classes``
            and the anchor attributes read by :meth:`AnchorSet.from_config`);
            when given, ``image_size`` and ``num_classes`` are taken from it.
        image_size, num_classes: used without ``model_config``, with the
            official anchor layout (levels 3–7, 3 scales, ratios 1, 2, 0.5).
        augment: training view (True) or evaluation view.
        max_instances_per_image: padded ground-truth length.

    Returns:
        A :class:`~dataset.detection_input.DetectionExampleProcessor`; its
        ``assigner.anchors`` holds the anchor boxes ``[N, 4]``.
    """
    normalization = preprocessing.DETECTION_NORMALIZATION
    if model_config is not None:
        assigner = TargetAssigner.from_config(model_config)
        image_size, num_classes = model_config.image_size, model_config.num_classes
        normalization = model_config.preprocessing
    else:
        assigner = TargetAssigner(AnchorSet.build(image_size), num_classes)
    return DetectionExampleProcessor(image_size, augment, num_classes, assigner, max_instances_per_image,
                                     normalization=normalization)


def inspect_detection(file_pattern, output_dir, num_images=8, image_size=512, num_classes=90,
                      names=None, augment=True, seed=0, max_instances_per_image=100,
                      model_config=None) -> List[str]:
    """Writes ``num_images`` PNGs of detection records; returns their paths.

    ``model_config`` (a detector model config) supplies the input size, classes
    and anchors; without it ``image_size`` / ``num_classes`` and the official
    anchor layout are used (see :func:`detection_processor`).
    """
    processor = detection_processor(model_config, image_size, num_classes, augment,
                                    max_instances_per_image)

    def view(serialized, seed_pair):
        data = processor.decode(serialized)
        if augment:
            image, boxes, classes, _, _, _ = processor.augment(data, seed_pair)
        else:
            image, scale = preprocessing.preprocess_detection_image(data["image"], processor.image_size,
                                                                    processor.normalization)
            hw = tf.cast(data["image_size"], tf.float32)
            boxes, classes = data["boxes"] * tf.concat([hw, hw], 0) / scale, data["classes"]
        return image, boxes, classes, data["source_id"]

    records = input_utils.read_records(file_pattern, False, deterministic=True).take(num_images)
    dataset = tf.data.Dataset.zip((records, input_utils.element_seeds(seed))).map(view)
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for image, boxes, classes, source_id in dataset:
        canvas = draw_boxes(preprocessing.denormalize_image(image, processor.normalization),
                            boxes.numpy(), classes.numpy(), names or {})
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
        canvas = Image.fromarray(preprocessing.denormalize_image(image, "scale_128"))
        ImageDraw.Draw(canvas).text((4, 4), (names or {}).get(cls, str(cls)), fill=(255, 255, 0))
        path = os.path.join(output_dir, f"classification_{index:03d}.png")
        canvas.save(path)
        paths.append(path)
    return paths


def detection_model_config(config_file=None, model_name=None, hparams=None, image_size=None,
                           num_classes=None):
    """Resolves the detector config the inspector draws for.

    Args:
        config_file, model_name, hparams: as in ``main.py`` (default model:
            the registry's default, EfficientDet-D0).
        image_size: optional square size overriding ``model.image_size``.
        num_classes: optional override of ``model.num_classes``.

    Returns:
        The resolved ``config.model``.

    Raises:
        ConfigError: bad config, or a model without anchors (not a detector).
    """
    overrides = []
    if image_size:
        overrides.append(f"model.image_size={int(image_size)}")
    if num_classes:
        overrides.append(f"model.num_classes={int(num_classes)}")
    model = load_config(config_file, model_name, hparams, overrides).model
    if not hasattr(model, "anchor_scale"):
        raise ConfigError(f"{model.name} is not a detector; use --task classification for its records.")
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file_pattern", required=True, help="TFRecord glob.")
    parser.add_argument("--output_dir", required=True, help="Where the PNGs go.")
    parser.add_argument("--task", choices=("detection", "classification"), default="detection")
    parser.add_argument("--model_name", default=None,
                        help="Detector whose input size and anchors are used (default efficientdet-d0).")
    parser.add_argument("--config", default=None, help="Optional YAML recipe (detection).")
    parser.add_argument("--hparams", default=None,
                        help="Comma-separated config overrides, as in main.py (detection).")
    parser.add_argument("--num_images", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=None,
                        help="Square input size; default the model's (detection) / 224.")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="Default the model's (detection) / 1000.")
    parser.add_argument("--label_map", default=None, help="JSON {name: id} or text file (line i = id i).")
    parser.add_argument("--no_augment", action="store_true", help="Show the evaluation view.")
    parser.add_argument("--randaug_magnitude", type=float, default=None, help="Classification only.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = load_names(args.label_map)
    if args.task == "detection":
        try:
            model = detection_model_config(args.config, args.model_name, args.hparams, args.image_size,
                                           args.num_classes)
        except ConfigError as error:
            hint = ("" if "registered" not in str(error)
                    else "\nFor detection records run python -m efficientdet.inspect_tfrecords.")
            print(f"error: {error}{hint}", file=sys.stderr)
            return 2
        anchors = AnchorSet.from_config(model)
        height, width = anchors.image_size
        print(f"{model.name} at {height}x{width}: {anchors.num_anchors} anchors, levels "
              f"{anchors.min_level}-{anchors.max_level}, {anchors.anchors_per_location} per location")
        paths = inspect_detection(args.file_pattern, args.output_dir, args.num_images, names=names,
                                  augment=not args.no_augment, seed=args.seed, model_config=model)
    else:
        paths = inspect_classification(args.file_pattern, args.output_dir, args.num_images, args.image_size or 224,
                                       args.num_classes or 1000, names, not args.no_augment, args.seed,
                                       args.randaug_magnitude)
    print("\n".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
