"""``--runmode infer_video``: run a detector over every frame of a video file.

Frames are read and written with OpenCV (``opencv-python-headless``, an
optional dependency imported only here). Each frame is converted to RGB, run
through a predictor of :mod:`common.export.predictors` at its own size (the
predictor letterboxes it), annotated with the boxes drawn by
:func:`common.export.visualize.draw_detections`, and written to the output
video at the input's frame rate and size. The codec follows the output's
extension: ``.mp4`` → ``mp4v``, ``.avi`` → ``MJPG``.
"""
from __future__ import annotations

import os
import time

import numpy as np

from common.export.errors import ExportError
from common.export.outputs import file_with_own_name
from common.export.visualize import draw_detections

CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mov": "mp4v", ".mkv": "MJPG"}
DEFAULT_FPS = 30.0  # when the container does not say


def import_cv2():
    """Returns the ``cv2`` module.

    Raises:
        ExportError: OpenCV is not installed (says how to install it).
    """
    try:
        import cv2
    except ImportError:
        raise ExportError("--runmode infer_video reads and writes videos with OpenCV, which is "
                          "not installed: pip install opencv-python-headless") from None
    return cv2


def check_output_video(path):
    """Raises :class:`ExportError` unless ``path`` has an extension with a known codec."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in CODECS:
        raise ExportError(f"--output_video {path!r}: unknown extension {extension!r}; use one "
                          f"of {sorted(CODECS)}.")
    return CODECS[extension]


def _open_writer(cv2, path, shown_path, fps, width, height):
    """A ``VideoWriter`` on ``path`` (a temporary with the output's own name);
    ``shown_path`` is the destination, for messages."""
    codec = check_output_video(path)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise ExportError(f"OpenCV cannot write {shown_path!r} with codec {codec!r}; try "
                          "an .avi output.")
    return writer


def annotate_video(predictor, input_path, output_path, label_map=None, min_score=0.4,
                   max_boxes=100, log=print):
    """Runs a detector on every frame and writes the annotated video.

    Args:
        predictor: a detection predictor (``outputs_boxes``) taking uint8
            ``[1, H, W, 3]`` RGB frames.
        input_path: video file readable by OpenCV.
        output_path: annotated video (``.mp4`` / ``.avi`` / ``.mov`` / ``.mkv``).
        label_map: ``{id: name}`` for the labels.
        min_score: smallest score drawn.
        max_boxes: most boxes drawn per frame.
        log: progress printer.

    Returns:
        A dict: ``input``, ``output``, ``frames``, ``width``, ``height``,
        ``video_fps`` (the container's frame rate), ``model_seconds`` (time in
        the predictor), ``total_seconds`` (decode + model + draw + encode),
        ``model_frames_per_second`` and ``frames_per_second`` (end to end).

    Raises:
        ExportError: OpenCV missing, a classifier predictor, an unreadable or
            empty video, an unwritable output.
        FileNotFoundError: ``input_path`` does not exist.

    The video is written in a hidden temporary directory beside
    ``output_path`` (under the output's own name: OpenCV picks the container
    from the extension) and moved onto ``output_path`` only when every frame is
    in: a failed or killed run leaves an earlier video there intact.
    """
    cv2 = import_cv2()
    check_output_video(output_path)
    if not predictor.outputs_boxes:
        raise ExportError("--runmode infer_video draws detections; this model is a "
                          f"{predictor.task} model (use --runmode infer on image files).")
    if not os.path.isfile(input_path):
        raise FileNotFoundError(f"--input_video {input_path!r} does not exist.")
    capture = cv2.VideoCapture(input_path)
    if not capture.isOpened():
        raise ExportError(f"OpenCV cannot open the video {input_path!r} (not a video file, or "
                          "a codec this OpenCV build lacks).")
    fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
    writer, frames, model_seconds = None, 0, 0.0
    start = time.perf_counter()
    try:
        with file_with_own_name(output_path) as temporary:
            try:
                while True:
                    ok, bgr = capture.read()
                    if not ok:
                        break
                    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
                    if writer is None:
                        height, width = rgb.shape[:2]
                        writer = _open_writer(cv2, temporary, output_path, fps, width, height)
                    tic = time.perf_counter()
                    outputs = predictor(rgb[None])
                    model_seconds += time.perf_counter() - tic
                    canvas, _ = draw_detections(
                        rgb, outputs["detection_boxes"][0], outputs["detection_scores"][0],
                        outputs["detection_classes"][0], label_map, min_score, max_boxes)
                    writer.write(np.ascontiguousarray(np.asarray(canvas)[:, :, ::-1]))
                    frames += 1
                    if frames % 100 == 0:
                        log(f"{frames} frames")
            finally:
                if writer is not None:
                    writer.release()  # finishes the container before the file is moved
            if frames == 0:
                raise ExportError(f"No frame could be read from {input_path!r}.")
    finally:
        capture.release()
    total = time.perf_counter() - start
    return {"input": input_path, "output": output_path, "frames": frames, "width": width,
            "height": height, "video_fps": float(fps), "model_seconds": model_seconds,
            "total_seconds": total, "model_frames_per_second": frames / model_seconds,
            "frames_per_second": frames / total}
