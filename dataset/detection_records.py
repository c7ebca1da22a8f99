"""Checking and encoding detection annotations into TF Object Detection API records.

Shared by the COCO, PASCAL VOC and synthetic converters: a converter turns its
annotation format into :class:`ImageTask` objects (pixel boxes, 1-based class
ids) and :func:`write_detection_tfrecords` decodes each image, validates every
object against the decoded image and writes sharded records.

Validation (``skip_invalid=False`` raises :class:`DatasetError` naming the
image; ``True`` leaves the item out and counts the reason):

* image level — the whole image is left out: missing or undecodable file,
  declared size different from the decoded one, non-integer ``source_id``,
  more valid objects than ``max_instances_per_image`` (never truncated);
* object level — only the object is left out: box with zero/negative size,
  box outside the image by more than ``box_tolerance_px``, class id outside
  ``1 … num_classes``.

Boxes that overshoot the image by at most ``box_tolerance_px`` (rounding in
annotation tools) are clipped to it and counted in the report.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

from dataset import image_utils
from dataset.converter_utils import ShardedWriter, SkipReport, parallel_map
from dataset.errors import DatasetError
from dataset.tfrecord_format import build_detection_example

logger = logging.getLogger("dataset")


@dataclasses.dataclass
class DetectionObject:
    """One annotated object.

    Attributes:
        box: ``(xmin, ymin, xmax, ymax)`` in original-image pixels.
        label: 1-based class id.
        text: class name.
        is_crowd: COCO ``iscrowd`` flag.
        area: COCO ``area`` (segment area); ``None`` = box area.
        difficult: VOC ``difficult`` flag or ``None``.
        ref: names the object in messages, e.g. ``"annotation id 42"``.
    """

    box: Tuple[float, float, float, float]
    label: int
    text: str = ""
    is_crowd: int = 0
    area: Optional[float] = None
    difficult: Optional[int] = None
    ref: str = ""


@dataclasses.dataclass
class ImageTask:
    """One image to convert; ``context`` names it in messages (file and id)."""

    image_path: str
    source_id: object
    filename: str
    objects: List[DetectionObject]
    declared_size: Optional[Tuple[int, int]] = None  # (height, width)
    context: str = ""


@dataclasses.dataclass(frozen=True)
class ValidationSettings:
    """How strictly objects are checked (see the module docstring)."""

    num_classes: int
    max_instances_per_image: int = 100
    box_tolerance_px: float = 1.0
    skip_invalid: bool = False


@dataclasses.dataclass
class ImageResult:
    """Outcome of one :class:`ImageTask`."""

    serialized: Optional[bytes]
    source_id: Optional[int]
    height: int = 0
    width: int = 0
    objects: List[DetectionObject] = dataclasses.field(default_factory=list)
    skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    clipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    converted_from: Optional[str] = None
    filename: str = ""


class _Invalid(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def parse_source_id(value, context: str) -> int:
    """The integer image id of ``value`` (int or integer text) or an error."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise _Invalid(
        "non-integer source_id",
        f"{context}: image id {value!r} is not an integer; COCO evaluation needs integer "
        "image ids (source_id). Renumber the images, or pass --skip_invalid.",
    )


def _check_object(obj: DetectionObject, height: int, width: int, settings, where: str):
    """Returns the (possibly clipped) box and whether it was clipped, or raises _Invalid."""
    xmin, ymin, xmax, ymax = (float(c) for c in obj.box)
    name = (f"{where}, object {obj.ref or '?'} (class {obj.label} {obj.text!r}, "
            f"box x {xmin:g}..{xmax:g}, y {ymin:g}..{ymax:g})")
    if not 1 <= int(obj.label) <= settings.num_classes:
        raise _Invalid("class id out of range",
                       f"{name}: class id {obj.label} is outside 1..{settings.num_classes}; fix the "
                       "label map / category ids or --num_classes, or pass --skip_invalid.")
    if not (xmax > xmin and ymax > ymin):
        raise _Invalid("box with zero or negative size",
                       f"{name}: the box has zero or negative width/height; fix the annotation "
                       "or pass --skip_invalid.")
    tol = settings.box_tolerance_px
    if xmin < -tol or ymin < -tol or xmax > width + tol or ymax > height + tol:
        raise _Invalid("box outside the image",
                       f"{name}: the box lies outside the {width}x{height} (w x h) image by more "
                       f"than {tol:g} px; fix the annotation or pass --skip_invalid.")
    clipped = (max(0.0, xmin), max(0.0, ymin), min(float(width), xmax), min(float(height), ymax))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise _Invalid("box with zero or negative size",
                       f"{name}: the box has no area inside the image; fix the annotation or pass "
                       "--skip_invalid.")
    return clipped, clipped != (xmin, ymin, xmax, ymax)


def convert_image(task: ImageTask, settings: ValidationSettings) -> ImageResult:
    """Decodes, checks and encodes one image (see the module docstring).

    Raises:
        DatasetError: on invalid data when ``settings.skip_invalid`` is False.
    """
    where = task.context or f"image {task.filename!r} (id {task.source_id})"
    skipped, clipped = [], []
    try:
        source_id = parse_source_id(task.source_id, where)
        try:
            image = image_utils.load_rgb_jpeg(task.image_path, where)
        except DatasetError as error:
            missing = "cannot read" in str(error)
            raise _Invalid("missing image file" if missing else "undecodable image", str(error))
        if task.declared_size and tuple(task.declared_size) != (image.height, image.width):
            h, w = task.declared_size
            raise _Invalid(
                "image size differs from the annotation",
                f"{where}: the annotation says {w}x{h} (w x h) but the file decodes to "
                f"{image.width}x{image.height}; fix the annotation or pass --skip_invalid.")
        kept = []
        for obj in task.objects:
            try:
                box, was_clipped = _check_object(obj, image.height, image.width, settings, where)
            except _Invalid as invalid:
                if not settings.skip_invalid:
                    raise
                skipped.append((invalid.reason, f"{where}, object {obj.ref or '?'}"))
                continue
            if was_clipped:
                clipped.append(("box clipped to the image (within --box_tolerance_px)",
                                f"{where}, object {obj.ref or '?'}"))
            kept.append(dataclasses.replace(obj, box=box))
        if len(kept) > settings.max_instances_per_image:
            raise _Invalid(
                "more objects than max_instances_per_image",
                f"{where}: {len(kept)} objects, more than --max_instances_per_image="
                f"{settings.max_instances_per_image}; raise the limit (and "
                "data.max_instances_per_image) or pass --skip_invalid to leave the image out.")
    except _Invalid as invalid:
        if not settings.skip_invalid:
            raise DatasetError(str(invalid)) from None
        # The whole image is left out; its object-level findings no longer matter.
        return ImageResult(None, None, skipped=[(invalid.reason, where)])

    h, w = float(image.height), float(image.width)
    areas = [o.area if o.area is not None else (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]) for o in kept]
    example = build_detection_example(
        encoded=image.encoded,
        height=image.height,
        width=image.width,
        source_id=str(source_id),
        boxes=[(o.box[1] / h, o.box[0] / w, o.box[3] / h, o.box[2] / w) for o in kept],
        labels=[o.label for o in kept],
        texts=[o.text for o in kept],
        is_crowd=[int(o.is_crowd) for o in kept],
        areas=areas,
        difficult=[int(o.difficult or 0) for o in kept] if any(o.difficult is not None for o in kept) else None,
        filename=task.filename,
    )
    return ImageResult(example.SerializeToString(), source_id, image.height, image.width,
                       kept, skipped, clipped, image.converted_from, task.filename)


@dataclasses.dataclass
class ConversionSummary:
    """What :func:`write_detection_tfrecords` wrote and left out."""

    paths: List[str]
    num_images: int
    num_objects: int
    skipped: SkipReport
    clipped: SkipReport
    converted: dict
    results: List[ImageResult]

    def as_dict(self) -> dict:
        return {"paths": self.paths, "num_images": self.num_images, "num_objects": self.num_objects,
                "skipped": self.skipped.as_dict(), "clipped": self.clipped.as_dict(),
                "converted_to_rgb_jpeg": dict(self.converted)}


def describe_detection_summary(summary: ConversionSummary) -> str:
    """One line for the converters' command lines."""
    return (f"wrote {summary.num_images} images, {summary.num_objects} objects; "
            f"skipped {summary.skipped.total}, clipped {summary.clipped.total}")


def write_detection_tfrecords(
    tasks: Sequence[ImageTask],
    output_prefix: str,
    num_shards: int,
    settings: ValidationSettings,
    num_workers: int = 1,
    keep_results: bool = False,
    side_files: Optional[Mapping[str, Callable[["ConversionSummary"], str]]] = None,
) -> ConversionSummary:
    """Converts ``tasks`` and writes sharded records ``{output_prefix}-*-of-*.tfrecord``.

    All or nothing (:class:`~dataset.converter_utils.ShardedWriter`): the shards
    and side files appear only once every image is converted; on an error an
    earlier output at the same prefix is left as it was.

    Args:
        tasks: images with their annotations.
        output_prefix: path prefix of the shards.
        num_shards: number of files.
        settings: validation settings.
        num_workers: decoding processes.
        keep_results: keep per-image results (without the encoded bytes) in the
            summary, e.g. to write a ground-truth JSON of exactly what was written.
        side_files: ``{path: render}``; each file gets ``render(summary)`` as
            its text and is committed together with the shards (e.g. a
            ground-truth JSON that must match them).

    Returns:
        A :class:`ConversionSummary`; its counts are also logged.

    Raises:
        DatasetError: invalid data (without ``skip_invalid``), no image left to
            write, or an output that cannot be written.
    """
    skipped, clipped = SkipReport(), SkipReport()
    converted = {}
    results = []
    num_objects = 0
    fn = functools.partial(convert_image, settings=settings)
    side_files = dict(side_files or {})
    with ShardedWriter(output_prefix, num_shards, side_paths=list(side_files)) as writer:
        for result in parallel_map(fn, tasks, num_workers):
            skipped.merge(result.skipped)
            clipped.merge(result.clipped)
            if result.serialized is None:
                continue
            writer.write(result.serialized)
            num_objects += len(result.objects)
            if result.converted_from:
                converted[result.converted_from] = converted.get(result.converted_from, 0) + 1
            if keep_results:
                result.serialized = None
                results.append(result)
            if writer.count % 1000 == 0:
                logger.info("wrote %d images", writer.count)
        if writer.count == 0:
            # Committing empty shards would replace an earlier good output with nothing.
            detail = "; ".join(f"{count} {reason}" for reason, count in sorted(skipped.counts.items()))
            detail = f" (left out: {detail})" if detail else ""
            raise DatasetError(f"no image to write to {output_prefix}-*: the input lists {len(tasks)} "
                               f"image(s) and none was valid{detail}; nothing was written.")
        summary = ConversionSummary(writer.paths, writer.count, num_objects, skipped, clipped, converted, results)
        for path, render in side_files.items():
            writer.write_side_file(path, render(summary))
    logger.info("wrote %d images with %d objects to %d shards (%s-*)", writer.count, num_objects,
                num_shards, output_prefix)
    if converted:
        logger.info("converted to RGB JPEG: %s", ", ".join(f"{k}: {v}" for k, v in sorted(converted.items())))
    for report, title in ((skipped, "skipped (invalid)"), (clipped, "clipped boxes")):
        if report.total:
            logger.warning("%s", report.summary(title))
    return summary
