"""``--runmode infer_video``: frames in, annotated frames out, clear errors."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from common.export.errors import ExportError
from common.export.video import annotate_video, import_cv2

cv2 = pytest.importorskip("cv2", reason="infer_video needs opencv-python-headless "
                          "(requirements-test.txt)")
REPO = pathlib.Path(__file__).resolve().parents[2]
FRAMES, HEIGHT, WIDTH = 5, 96, 96


def _write_video(path, frames=FRAMES, height=HEIGHT, width=WIDTH):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((height, width, 3), 40 + 30 * i, np.uint8)  # grey, brighter each frame
        writer.write(frame)
    writer.release()
    return path


def _read_video(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


class _OneBoxDetector:
    """Stands in for a model: one class-1 box (ymin 20, xmin 30, ymax 70, xmax 80), score 0.9."""

    task = "detection"

    def __init__(self):
        self.calls = []

    @property
    def outputs_boxes(self):
        return self.task == "detection"

    def __call__(self, images):
        self.calls.append(images.shape)
        boxes = np.zeros((1, 3, 4), np.float32)
        boxes[0, 0] = (20, 30, 70, 80)
        return {"detection_boxes": boxes, "detection_scores": np.array([[0.9, 0, 0]], np.float32),
                "detection_classes": np.array([[1, 0, 0]], np.int32),
                "num_detections": np.array([1], np.int32)}


def test_every_frame_is_run_and_annotated(tmp_path):
    source = _write_video(tmp_path / "in.avi")
    detector = _OneBoxDetector()
    record = annotate_video(detector, str(source), str(tmp_path / "out" / "annotated.avi"),
                            {1: "circle"}, min_score=0.5)
    assert detector.calls == [(1, HEIGHT, WIDTH, 3)] * FRAMES  # RGB frames at their own size
    assert record["frames"] == FRAMES and (record["width"], record["height"]) == (WIDTH, HEIGHT)
    assert record["frames_per_second"] > 0 and record["model_frames_per_second"] > 0
    assert record["video_fps"] == pytest.approx(10.0)
    inputs, outputs = _read_video(source), _read_video(tmp_path / "out" / "annotated.avi")
    assert len(outputs) == FRAMES and outputs[0].shape == (HEIGHT, WIDTH, 3)
    for before, after in zip(inputs, outputs):
        # The box outline (drawn at x = 30) changes the frame; far from the box it does not.
        assert np.abs(after[45, 28:33].astype(int) - before[45, 28:33]).max() > 30  # MJPG blurs
        assert np.abs(after[90:, :10].astype(int) - before[90:, :10]).max() < 12


def test_errors_name_the_problem(tmp_path, monkeypatch):
    detector = _OneBoxDetector()
    with pytest.raises(FileNotFoundError, match="--input_video .*missing.avi.* does not exist"):
        annotate_video(detector, str(tmp_path / "missing.avi"), str(tmp_path / "o.avi"))
    (tmp_path / "notes.avi").write_text("not a video")
    with pytest.raises(ExportError, match="cannot open the video .*notes.avi"):
        annotate_video(detector, str(tmp_path / "notes.avi"), str(tmp_path / "o.avi"))
    source = _write_video(tmp_path / "in.avi")
    with pytest.raises(ExportError, match="unknown extension '.gif'"):
        annotate_video(detector, str(source), str(tmp_path / "o.gif"))
    detector.task = "classification"
    with pytest.raises(ExportError, match="draws detections"):
        annotate_video(detector, str(source), str(tmp_path / "o.avi"))
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
    with pytest.raises(ExportError, match="pip install opencv-python-headless"):
        import_cv2()


def test_cli_writes_the_annotated_video(tmp_path):
    source = _write_video(tmp_path / "clip.avi")
    out_video, out_json = tmp_path / "clip_annotated.mp4", tmp_path / "video.json"
    command = [str(c) for c in [sys.executable, "model_inspect.py", "--runmode", "infer_video",
               "--model_name", "efficientdet-d0", "--hparams", "image_size=128,num_classes=3",
               "--input_video", source, "--output_video", out_video, "--min_score_thresh", "0",
               "--max_boxes_to_draw", "3", "--output_json", out_json]]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "frames/second" in result.stdout
    frames = _read_video(out_video)
    assert len(frames) == FRAMES and frames[0].shape == (HEIGHT, WIDTH, 3)
    record = json.loads(out_json.read_text())
    assert record["frames"] == FRAMES and record["output"] == str(out_video)

    command[command.index(str(source))] = str(tmp_path / "nothing.mp4")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 2
    assert "nothing.mp4' does not exist" in result.stderr and "Traceback" not in result.stderr
