"""``--runmode infer``: run a predictor over image files and write annotated copies.

Every input gives one output file in ``output_dir`` with the input's base name
(``.jpg`` / ``.jpeg`` / ``.png`` kept, anything else written as ``.png``; a name
already taken by an earlier input gets ``_1``, ``_2`` …). Images are run one
at a time at their own size (the predictor letterboxes / crops them).

The annotated images are written under hidden temporary names and moved into
place together once every one is written (:class:`common.atomic_files.FileSet`):
a failed or killed run leaves the earlier outputs in ``output_dir`` as they were.
"""
from __future__ import annotations

import glob
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.atomic_files import FileSet
from common.export.visualize import draw_classification, draw_detections

# Output extension -> PIL format (temporaries end in .partial, so PIL cannot guess it).
_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
_KEEP_EXTENSIONS = tuple(_FORMATS)


class ImageReadError(ValueError):
    """An input image that cannot be read; the message names the file."""


def list_images(pattern):
    """Sorted files matching a glob (or one path).

    Raises:
        FileNotFoundError: naming the pattern when nothing matches.
    """
    if not pattern:
        raise FileNotFoundError("--input_image is required: a file or a glob such as 'imgs/*.jpg'.")
    files = sorted(f for f in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(f))
    if not files:
        raise FileNotFoundError(f"--input_image {pattern!r} matches no file.")
    return files


def read_image(path):
    """Reads an image file as uint8 RGB ``[H, W, 3]``.

    Raises:
        ImageReadError: naming the file when it is not a readable image.
    """
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ImageReadError(f"Cannot read image {path!r} ({error.__class__.__name__}: {error}); "
                             "inputs must be JPEG, PNG, BMP or GIF files.") from None


def _output_path(output_dir, path, taken):
    stem, extension = os.path.splitext(os.path.basename(path))
    extension = extension.lower() if extension.lower() in _KEEP_EXTENSIONS else ".png"
    candidate, n = stem + extension, 0
    while candidate in taken:
        n += 1
        candidate = f"{stem}_{n}{extension}"
    taken.add(candidate)
    return os.path.join(output_dir, candidate)


def _detection_record(outputs, label_map):
    from common.export.label_map import label_name

    count = int(outputs["num_detections"][0])
    return [
        {"box_yxyx": [round(float(v), 2) for v in outputs["detection_boxes"][0, i]],
         "score": float(outputs["detection_scores"][0, i]),
         "class_id": int(outputs["detection_classes"][0, i]),
         "class_name": label_name(label_map, outputs["detection_classes"][0, i])}
        for i in range(count)
    ]


def load_inputs(pattern):
    """Lists and reads every image of ``pattern``: ``(paths, uint8 [H, W, 3] arrays)``.

    Raises:
        FileNotFoundError, ImageReadError: bad paths or unreadable images.
    """
    files = list_images(pattern)
    return files, [read_image(f) for f in files]


def annotate(predictor, files, images, output_dir, label_map=None, min_score=0.4, max_boxes=100):
    """Runs ``predictor`` on each image and writes the annotated copies.

    Args:
        predictor: a predictor from :mod:`common.export.predictors` (``task`` set).
        files: input paths (for output names).
        images: the uint8 ``[H, W, 3]`` images.
        output_dir: where annotated images go (created; all appear together at the end).
        label_map: ``{id: name}``.
        min_score: detection drawing threshold.
        max_boxes: at most this many boxes per image.

    Returns:
        A list of per-image dicts: ``input``, ``output``, ``drawn`` and the
        predictions (``detections`` or ``top_k``).
    """
    os.makedirs(output_dir, exist_ok=True)
    label_map = label_map or {}
    taken = set()
    destinations = [_output_path(output_dir, path, taken) for path in files]
    records = []
    with FileSet(destinations) as written:
        for path, image, destination, temporary in zip(files, images, destinations,
                                                       written.temporaries):
            outputs = predictor(image[None])
            record = {"input": path}
            if predictor.outputs_boxes:
                canvas, drawn = draw_detections(
                    image, outputs["detection_boxes"][0], outputs["detection_scores"][0],
                    outputs["detection_classes"][0], label_map, min_score, max_boxes)
                record["detections"] = _detection_record(outputs, label_map)
            else:
                classes = outputs["top_k_classes"][0]
                probabilities = outputs["top_k_probabilities"][0]
                canvas, drawn = draw_classification(image, classes, probabilities, label_map)
                record["top_k"] = [{"class_id": int(c), "probability": float(p)}
                                   for c, p in zip(classes, probabilities)]
            record["output"] = destination
            record["drawn"] = drawn
            canvas.save(temporary, format=_FORMATS[os.path.splitext(destination)[1]])
            records.append(record)
    return records


def run_infer(predictor, pattern, output_dir, label_map=None, min_score=0.4, max_boxes=100):
    """:func:`load_inputs` then :func:`annotate`: every input is read (and
    validated) before anything runs, so a bad file fails fast."""
    files, images = load_inputs(pattern)
    return annotate(predictor, files, images, output_dir, label_map, min_score, max_boxes)
