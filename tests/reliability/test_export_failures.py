"""Exports are complete or absent; model_inspect's user errors are one line and exit code 2.

Most tests run ``model_inspect.py`` as a user does (a subprocess) and then
look at the exit code, the last line of stderr and the file system. The
mid-write failures of the file writers (TFLite, annotated images, video) are
provoked in-process, where a failure can be placed after writing has begun.
"""
import errno
import hashlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from common.atomic_files import is_temporary

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_D0 = ["--model_name", "efficientdet-d0", "--hparams", "image_size=128x128,num_classes=3"]


def _run(*args, timeout=900):
    return subprocess.run([sys.executable, "model_inspect.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def _last_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _assert_one_line_error(result, *fragments):
    """Exit code 2, no traceback, and the run ends with one error line holding ``fragments``."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = _last_line(result)
    assert line.startswith("E") and "model_inspect.py" in line, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in line, line
    assert sum(fragments[0] in other for other in result.stderr.splitlines()) == 1


def _tree_digest(root):
    """``{relative path: sha256}`` of every file under ``root``."""
    digest = {}
    for parent, _, files in os.walk(root):
        for name in files:
            path = os.path.join(parent, name)
            with open(path, "rb") as handle:
                digest[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return digest


def _visible(directory):
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


# --------------------------------------------------------------- unwritable outputs
@pytest.fixture
def a_file(tmp_path):
    """A regular file: paths under it cannot be created."""
    path = tmp_path / "not_a_dir"
    path.write_text("user data\n")
    return path


@pytest.mark.parametrize("runmode", ["saved_model", "tflite", "onnx"])
def test_export_dir_under_a_file_is_one_line_exit_2(runmode, a_file):
    result = _run("--runmode", runmode, *TINY_D0, "--export_dir", a_file / "out")
    _assert_one_line_error(result, f"Cannot write '{a_file / 'out'}",
                           f"'{a_file}' is a file, not a directory",
                           "choose another --export_dir")
    assert a_file.read_text() == "user data\n"
    assert sorted(os.listdir(a_file.parent)) == [a_file.name]  # no probe or temporary left


def test_export_dir_that_is_a_file_or_holds_other_files(tmp_path, a_file, side_by_side):
    # The export replaces the whole directory, so a directory holding anything
    # else than a SavedModel is refused instead of being wiped.
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "efficientdet-d0.tflite").write_bytes(b"an earlier tflite file")
    onto_a_file, result = side_by_side(
        "model_inspect.py",
        ["--runmode", "saved_model", *TINY_D0, "--export_dir", a_file],
        ["--runmode", "saved_model", *TINY_D0, "--export_dir", shared])
    _assert_one_line_error(onto_a_file, f"Cannot write '{a_file}' (--export_dir)",
                           "it is a file, not a directory")
    assert a_file.read_text() == "user data\n"
    _assert_one_line_error(result, f"Cannot write '{shared}' (--export_dir)",
                           "not part of a SavedModel (efficientdet-d0.tflite)",
                           "choose a new or empty --export_dir")
    assert os.listdir(shared) == ["efficientdet-d0.tflite"]


@pytest.mark.parametrize("flag", ["--tflite_path", "--onnx_path"])
def test_explicit_file_paths_under_a_file_or_onto_a_directory(flag, tmp_path, a_file,
                                                              side_by_side):
    runmode = flag[2:].split("_")[0]
    under_a_file, result = side_by_side(
        "model_inspect.py",
        ["--runmode", runmode, *TINY_D0, flag, a_file / "model.bin"],
        ["--runmode", runmode, *TINY_D0, flag, tmp_path])
    _assert_one_line_error(under_a_file, f"Cannot write '{a_file / 'model.bin'}' ({flag})",
                           "is a file, not a directory")
    _assert_one_line_error(result, f"Cannot write '{tmp_path}' ({flag})", "it is a directory",
                           "give a file path")


def test_output_json_in_an_unwritable_place_fails_before_the_work(tmp_path, a_file, side_by_side):
    under_a_file, result = side_by_side(
        "model_inspect.py",
        ["--runmode", "stats", *TINY_D0, "--output_json", a_file / "stats.json"],
        ["--runmode", "stats", *TINY_D0, "--output_json", tmp_path])
    _assert_one_line_error(under_a_file,
                           f"Cannot write '{a_file / 'stats.json'}' (--output_json)",
                           "is a file, not a directory", "choose another --output_json")
    assert "total_parameters" not in under_a_file.stdout  # failed before counting anything
    _assert_one_line_error(result, f"Cannot write '{tmp_path}' (--output_json)",
                           "it is a directory")
    assert "total_parameters" not in result.stdout


def test_image_and_video_outputs_in_unwritable_places(tmp_path, a_file, side_by_side):
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    images, video, gif = side_by_side(
        "model_inspect.py",
        ["--runmode", "infer", *TINY_D0, "--input_image", image, "--output_image_dir", a_file],
        ["--runmode", "infer_video", *TINY_D0, "--input_video", tmp_path / "in.avi",
         "--output_video", a_file / "out.mp4"],
        ["--runmode", "infer_video", *TINY_D0, "--input_video", tmp_path / "in.avi",
         "--output_video", tmp_path / "out.gif"])
    _assert_one_line_error(images, f"Cannot write '{a_file}' (--output_image_dir)",
                           "it is a file, not a directory")
    _assert_one_line_error(video, f"Cannot write '{a_file / 'out.mp4'}' (--output_video)",
                           "is a file, not a directory")
    _assert_one_line_error(gif, "--output_video", "unknown extension '.gif'")
    assert sorted(os.listdir(tmp_path)) == ["in.png", a_file.name]


def test_directory_without_write_permission_is_named(tmp_path, monkeypatch):
    """The probe file is what detects it (permissions, read-only mounts, quotas); as
    root a chmod does not stop writes, so the refusal is simulated."""
    from common.export import outputs
    from common.export.errors import ExportError

    def read_only(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(outputs, "open", read_only, raising=False)
    with pytest.raises(ExportError) as raised:
        outputs.check_output(str(tmp_path / "model.tflite"), "--tflite_path")
    assert str(raised.value) == (
        f"Cannot write '{tmp_path / 'model.tflite'}' (--tflite_path): cannot create files in "
        f"'{tmp_path}' (Permission denied); choose another --tflite_path or make that "
        "directory writable.")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------- other user errors
def test_missing_checkpoint_dir_and_input_glob_are_one_line(tmp_path, side_by_side):
    checkpoint, result = side_by_side(
        "model_inspect.py",
        ["--runmode", "saved_model", *TINY_D0, "--ckpt_path", tmp_path / "no_such_dir",
         "--export_dir", tmp_path / "sm"],
        ["--runmode", "infer", *TINY_D0, "--input_image", tmp_path / "none-*.jpg",
         "--output_image_dir", tmp_path / "out"])
    _assert_one_line_error(checkpoint, f"Checkpoint '{tmp_path / 'no_such_dir'}' not found")
    assert not (tmp_path / "sm").exists()
    _assert_one_line_error(result, "--input_image", "matches no file")
    assert sorted(os.listdir(tmp_path)) == []


def test_checkpoint_of_another_model_is_one_line(tmp_path, automl_fixtures):
    result = _run("--runmode", "saved_model", *TINY_D0,
                  "--ckpt_path", automl_fixtures / "effnetv2_b0" / "tf1_ema_ckpt",
                  "--export_dir", tmp_path / "sm")
    _assert_one_line_error(result, "shares no variable names with model 'efficientdet-d0'")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------- failed and killed exports
def test_failed_tflite_export_leaves_the_earlier_file(tmp_path):
    earlier = tmp_path / "model.tflite"
    earlier.write_bytes(b"TFL3 an earlier, good export" * 100)
    before = hashlib.sha256(earlier.read_bytes()).hexdigest()
    result = _run("--runmode", "tflite", *TINY_D0, "--quantize", "int8",
                  "--file_pattern", tmp_path / "calibration-*.tfrecord", "--tflite_path", earlier)
    _assert_one_line_error(result, "--file_pattern", "matches no TFRecord file")
    assert hashlib.sha256(earlier.read_bytes()).hexdigest() == before
    assert os.listdir(tmp_path) == ["model.tflite"]


def test_tflite_write_failing_midway_leaves_the_earlier_file(tmp_path, monkeypatch):
    from common.export import tflite

    earlier = tmp_path / "model.tflite"
    earlier.write_bytes(b"an earlier, good export")

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    # The bytes are written, then flushed to disk: the flush fails as on a full disk.
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        tflite.write_tflite(b"a new export" * 1000, str(earlier))
    assert earlier.read_bytes() == b"an earlier, good export"
    assert os.listdir(tmp_path) == ["model.tflite"]
    monkeypatch.undo()
    tflite.write_tflite(b"a new export", str(earlier))
    assert earlier.read_bytes() == b"a new export" and os.listdir(tmp_path) == ["model.tflite"]


class _FailingDetector:
    """Stands in for a model: one box per image; raises on call number ``fail_at``."""

    task = "detection"
    outputs_boxes = True

    def __init__(self, fail_at):
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, images):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the model failed")
        boxes = np.array([[[4, 4, 20, 20]]], np.float32)
        return {"detection_boxes": boxes, "detection_scores": np.array([[0.9]], np.float32),
                "detection_classes": np.array([[1]], np.int32),
                "num_detections": np.array([1], np.int32)}


def test_failed_infer_run_leaves_earlier_annotated_images(tmp_path):
    from common.export.infer import annotate

    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"earlier annotated a")
    images = [np.full((32, 32, 3), v, np.uint8) for v in (50, 100)]
    with pytest.raises(RuntimeError, match="the model failed"):
        annotate(_FailingDetector(fail_at=2), ["in/a.png", "in/b.jpg"], images, str(out))
    assert os.listdir(out) == ["a.png"] and (out / "a.png").read_bytes() == b"earlier annotated a"
    records = annotate(_FailingDetector(fail_at=0), ["in/a.png", "in/b.jpg"], images, str(out))
    assert sorted(os.listdir(out)) == ["a.png", "b.jpg"] and records[1]["drawn"] == 1
    with Image.open(out / "a.png") as first, Image.open(out / "b.jpg") as second:
        assert (first.format, second.format) == ("PNG", "JPEG")


def test_failed_video_run_leaves_the_earlier_video(tmp_path):
    cv2 = pytest.importorskip("cv2", reason="infer_video needs opencv-python-headless")
    from common.export.video import annotate_video

    source = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 32))
    for i in range(4):
        writer.write(np.full((32, 32, 3), 40 * i, np.uint8))
    writer.release()
    output = tmp_path / "out.mp4"
    output.write_bytes(b"an earlier annotated video")
    with pytest.raises(RuntimeError, match="the model failed"):  # after two frames were written
        annotate_video(_FailingDetector(fail_at=3), str(source), str(output), log=lambda _: None)
    assert output.read_bytes() == b"an earlier annotated video"
    assert sorted(os.listdir(tmp_path)) == ["in.avi", "out.mp4"]
    record = annotate_video(_FailingDetector(fail_at=0), str(source), str(output),
                            log=lambda _: None)
    assert record["frames"] == 4 and sorted(os.listdir(tmp_path)) == ["in.avi", "out.mp4"]
    capture = cv2.VideoCapture(str(output))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()


def _wait_for_temporary(process, parent, name, timeout=600):
    """Polls ``parent`` until the export's temporary directory appears; returns its name."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for entry in os.listdir(parent):
            if is_temporary(entry) and entry.endswith(f"-{name}.partial") \
                    and os.path.isdir(os.path.join(parent, entry)):
                return entry
        time.sleep(0.005)
    process.kill()
    process.wait()
    pytest.fail(f"no temporary export directory appeared in {parent} (exit code "
                f"{process.returncode})")


@pytest.mark.slow
def test_killed_saved_model_export_leaves_the_earlier_export(tmp_path):
    parent = tmp_path / "exports"
    export_dir = parent / "sm"
    command = [sys.executable, "model_inspect.py", "--runmode", "saved_model", *TINY_D0,
               "--export_dir", str(export_dir)]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    earlier = _tree_digest(export_dir)
    assert {"saved_model.pb", "fingerprint.pb", "config.yaml"} <= set(earlier)

    # A second export over the first (another graph: 4 classes), killed while it
    # writes its temporary directory. Its log goes to a file: a full pipe would stall it.
    with open(tmp_path / "second.log", "w") as log:
        second = subprocess.Popen(
            [sys.executable, "model_inspect.py", "--runmode", "saved_model",
             "--model_name", "efficientdet-d0", "--hparams", "image_size=128x128,num_classes=4",
             "--export_dir", str(export_dir)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
    temporary = _wait_for_temporary(second, parent, "sm")
    second.send_signal(signal.SIGKILL)
    second.wait(timeout=60)
    assert second.returncode == -signal.SIGKILL
    assert _tree_digest(export_dir) == earlier  # byte for byte
    assert _visible(parent) == ["sm"] and temporary in os.listdir(parent)

    third = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"Removed {parent / temporary}, left incomplete by an interrupted earlier run" \
        in third.stderr
    assert sorted(os.listdir(parent)) == ["sm"]
    assert {"saved_model.pb", "fingerprint.pb", "config.yaml"} <= set(_tree_digest(export_dir))
