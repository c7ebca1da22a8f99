"""Converts an ImageNet-style folder of class sub-folders to sharded TFRecords.

``image_dir/<class name>/<image>`` becomes records with ``image/encoded`` (RGB
JPEG), ``image/class/label`` and ``image/class/text``
(:mod:`dataset.tfrecord_format`). **Labels are 0-based**: line ``i`` of the
label-map file (one class name per line) is label ``i``. By default classes are
the sorted sub-folder names; pass the training set's label map with
``--label_map`` when converting the validation set so both use the same ids.
Images are written in a seeded random order so that every shard mixes all
classes. Files whose extension is not an image's are ignored and counted.

Example::

    python -m dataset.create_classification_tfrecord --image_dir data/flowers/train \\
        --output_prefix data/flowers/train --num_shards 16
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import random
import sys
from typing import List, Optional

from dataset import image_utils
from dataset.converter_utils import (ShardedWriter, SkipReport, add_common_flags, check_output_path,
                                     parallel_map, run_conversion, setup_logging, write_text_file)
from dataset.errors import DatasetError
from dataset.tfrecord_format import build_classification_example

logger = logging.getLogger("dataset")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def read_label_map(path: str) -> List[str]:
    """Class names in label order from a label-map file (one name per line)."""
    try:
        with open(path) as handle:
            names = [line.strip() for line in handle if line.strip()]
    except OSError as error:
        raise DatasetError(f"cannot read label map {path!r}: {error.strerror or error}.") from error
    if len(set(names)) != len(names):
        raise DatasetError(f"label map {path!r} lists a class name twice.")
    return names


def label_map_text(names: List[str]) -> str:
    """The label-map file content: class names in label order, one per line."""
    return "\n".join(names) + "\n"


def write_label_map(path: str, names: List[str]):
    """Writes class names in label order, one per line (atomically: complete or not at all)."""
    write_text_file(path, label_map_text(names))


@dataclasses.dataclass
class ClassificationSummary:
    """What :func:`convert_classification` wrote and left out."""

    paths: List[str]
    label_map_path: str
    class_names: List[str]
    num_images: int
    per_class: dict
    skipped: SkipReport
    converted: dict

    def as_dict(self) -> dict:
        return {"paths": self.paths, "label_map": self.label_map_path, "num_images": self.num_images,
                "per_class": self.per_class, "skipped": self.skipped.as_dict(),
                "converted_to_rgb_jpeg": self.converted}


def _encode(item, skip_invalid):
    path, label, name = item
    try:
        image = image_utils.load_rgb_jpeg(path, f"image {path} (class {name!r})")
    except DatasetError:
        if not skip_invalid:
            raise
        return None, ("undecodable image", path), None
    example = build_classification_example(image.encoded, label, name, os.path.basename(path),
                                           height=image.height, width=image.width)
    return example.SerializeToString(), None, image.converted_from


def convert_classification(
    image_dir: str,
    output_prefix: str,
    num_shards: int = 8,
    label_map: Optional[str] = None,
    output_label_map: Optional[str] = None,
    skip_invalid: bool = False,
    num_workers: int = 1,
    seed: int = 0,
) -> ClassificationSummary:
    """Converts ``image_dir/<class>/<image>`` to ``{output_prefix}-*-of-*.tfrecord``.

    Args:
        image_dir: folder of class sub-folders.
        output_prefix: output path prefix.
        num_shards: number of TFRecord files.
        label_map: existing label map to use (e.g. the training set's); a
            sub-folder missing from it is an error.
        output_label_map: where to write the label map; default
            ``{output_prefix}_label_map.txt``.
        skip_invalid: leave undecodable images out (counted) instead of raising.
        num_workers: decoding processes.
        seed: seed of the write order.

    Returns:
        A :class:`ClassificationSummary` (also logged).

    Raises:
        DatasetError: unreadable inputs, an undecodable image (without
            ``skip_invalid``) or an output that cannot be written; nothing is
            written then, and earlier shards and label map at the same paths
            are left as they were.
    """
    output_label_map = output_label_map or f"{output_prefix}_label_map.txt"
    check_output_path(output_prefix, "--output_prefix")
    check_output_path(output_label_map, "--output_label_map", example="label_map.txt")
    if not os.path.isdir(image_dir):
        raise DatasetError(f"--image_dir {image_dir!r} is not a folder; pass the folder of class sub-folders "
                           "(image_dir/<class>/<image>).")
    folders = sorted(d for d in os.listdir(image_dir) if os.path.isdir(os.path.join(image_dir, d)))
    if not folders:
        raise DatasetError(f"{image_dir!r} has no class sub-folders; expected image_dir/<class>/<image>.")
    names = read_label_map(label_map) if label_map else folders
    unknown = [f for f in folders if f not in names]
    if unknown:
        raise DatasetError(f"class folders {unknown} of {image_dir!r} are not in the label map {label_map!r}; "
                           "use the label map of the training set that has them, or remove the folders.")
    skipped = SkipReport()
    items = []
    for folder in folders:
        for file_name in sorted(os.listdir(os.path.join(image_dir, folder))):
            path = os.path.join(image_dir, folder, file_name)
            if os.path.splitext(file_name)[1].lower() in IMAGE_EXTENSIONS:
                items.append((path, names.index(folder), folder))
            elif os.path.isfile(path):
                skipped.add("not an image file extension (ignored)", path)
    random.Random(seed).shuffle(items)
    per_class, converted = {n: 0 for n in names}, {}
    fn = functools.partial(_encode, skip_invalid=skip_invalid)
    # The label map is committed together with the shards: labels and names always match.
    with ShardedWriter(output_prefix, num_shards, side_paths=[output_label_map]) as writer:
        for (path, label, name), (serialized, skip, source) in zip(items, parallel_map(fn, items, num_workers)):
            if serialized is None:
                skipped.add(*skip)
                continue
            writer.write(serialized)
            per_class[name] += 1
            if source:
                converted[source] = converted.get(source, 0) + 1
        if writer.count == 0:
            # Committing empty shards would replace an earlier good output with nothing.
            detail = "; ".join(f"{count} {reason}" for reason, count in sorted(skipped.counts.items()))
            raise DatasetError(f"no image to write to {output_prefix}-*: {image_dir!r} has {len(items)} image "
                               f"file(s) and none could be converted{f' (left out: {detail})' if detail else ''}; "
                               "nothing was written.")
        writer.write_side_file(output_label_map, label_map_text(names))
    logger.info("wrote %d images of %d classes to %d shards (%s-*), label map %s", writer.count,
                len(names), num_shards, output_prefix, output_label_map)
    if converted:
        logger.info("converted to RGB JPEG: %s", converted)
    if skipped.total:
        logger.warning("%s", skipped.summary("left out"))
    return ClassificationSummary(writer.paths, output_label_map, names, writer.count, per_class, skipped, converted)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_dir", required=True, help="Folder of class sub-folders.")
    parser.add_argument("--output_prefix", required=True, help="Output path prefix.")
    parser.add_argument("--label_map", default=None,
                        help="Existing label map (one class per line, line i = label i) to reuse.")
    parser.add_argument("--output_label_map", default=None,
                        help="Where to write the label map (default PREFIX_label_map.txt).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the write order.")
    add_common_flags(parser, detection=False)
    args = parser.parse_args(argv)
    setup_logging()
    return run_conversion(
        lambda: convert_classification(args.image_dir, args.output_prefix, args.num_shards, args.label_map,
                                       args.output_label_map, args.skip_invalid, args.num_workers, args.seed),
        args.report_json,
        lambda summary: (f"wrote {summary.num_images} images of {len(summary.class_names)} classes; "
                         f"left out {summary.skipped.total}"))


if __name__ == "__main__":
    sys.exit(main())
