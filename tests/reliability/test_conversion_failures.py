"""TFRecord converters never destroy data and keep colour.

Every converter is run as a user runs it (``python -m dataset.create_…`` in a
subprocess) and the file system is checked afterwards: a failed or killed run
leaves an earlier output at the same prefix byte-for-byte intact and adds no
shard; user mistakes end in one ``ERROR dataset:`` line and exit code 2; a
successful run removes leftovers of a killed run and an older shard set with
another ``--num_shards``; re-encoded images keep their colours (4:4:4) and RGB
JPEGs are stored unchanged.

Earlier outputs are made in-process (faster than one more subprocess); only
the runs under test are subprocesses.
"""
import contextlib
import glob
import hashlib
import io
import json
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 180


# ----------------------------------------------------------------------------- helpers


def detailed_image(height=48, width=64, seed=0):
    """A gradient with strong per-pixel noise in every channel: hard for chroma subsampling."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255.0 / width, y * 255.0 / height, (x + y) * 255.0 / (height + width)], axis=-1)
    return np.clip(base + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)


def encode(array, fmt="JPEG", mode=None, **options):
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def write_coco(root, images):
    """Writes ``root/images/*`` and ``root/instances.json``; ``images`` is ``[(file_name, bytes)]``.

    Returns:
        ``(json_path, image_dir)``.
    """
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir, exist_ok=True)
    entries = []
    for index, (file_name, data) in enumerate(images):
        with open(os.path.join(image_dir, file_name), "wb") as handle:
            handle.write(data)
        entries.append({"id": index + 1, "file_name": file_name})
    annotations = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [2, 2, 10, 10], "iscrowd": 0}
                   for i in range(len(images))]
    json_path = os.path.join(root, "instances.json")
    with open(json_path, "w") as handle:
        json.dump({"images": entries, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]},
                  handle)
    return json_path, image_dir


def good_images(count, seed=0):
    return [(f"{i:02d}.jpg", encode(detailed_image(32, 40, seed + i))) for i in range(count)]


def snapshot(root):
    """``{relative path: sha256 (files) or 'dir'}`` of everything under ``root``."""
    out = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(parent, name), root)] = "dir"
        for name in files:
            path = os.path.join(parent, name)
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                out[os.path.relpath(path, root)] = "fifo"
                continue
            with open(path, "rb") as handle:
                out[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def converter_command(module, *args):
    return [sys.executable, "-m", f"dataset.{module}", *[str(a) for a in args]]


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)  # the converters must run from the repository root alone
    return env


def run_converter(module, *args, **kwargs):
    """Runs ``python -m dataset.<module> args`` from the repository root."""
    return subprocess.run(converter_command(module, *args), cwd=REPO_ROOT, env=_env(), capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False, **kwargs)


def the_error_line(result):
    """Asserts exit code 2, no traceback and exactly one ``ERROR dataset:`` line; returns that line."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR dataset:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def assert_success(result):
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def assert_no_empty_or_temporary_files(root):
    for parent, _, files in os.walk(root):
        for name in files:
            path = os.path.join(parent, name)
            assert not name.startswith(".tmp-"), path
            assert os.path.getsize(path) > 0, f"0-byte file {path}"


def read_records(pattern):
    """``{filename: encoded image bytes}`` of every record matching ``pattern``."""
    import tensorflow as tf  # only the tests that read records pay for the import

    from dataset.tfrecord_format import parse_detection_example

    out = {}
    for record in tf.data.TFRecordDataset(sorted(glob.glob(pattern))):
        parsed = parse_detection_example(record)
        out[parsed["filename"].numpy().decode()] = parsed["encoded"].numpy()
    return out


# ----------------------------------------------------------------------------- failures keep earlier output


def _earlier_coco_output(tmp_path, num_images):
    """A good 2-shard COCO conversion at ``tmp_path/out/train``; returns
    ``(json_path, image_dir, out, prefix, snapshot)``."""
    from dataset.create_coco_tfrecord import convert_coco

    json_path, image_dir = write_coco(tmp_path, good_images(num_images))
    out = tmp_path / "out"
    prefix = str(out / "train")
    convert_coco(json_path, image_dir, prefix, num_shards=2)
    return json_path, image_dir, out, prefix, snapshot(out)


def test_coco_failure_on_last_image_keeps_earlier_output(tmp_path):
    json_path, image_dir, out, prefix, before = _earlier_coco_output(tmp_path, 4)
    assert sorted(before) == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    with open(os.path.join(image_dir, "03.jpg"), "wb") as handle:  # the last image of the JSON
        handle.write(b"\xff\xd8\xff\xe0 this is not a JPEG")

    # Another shard count too: none of the new shard names may appear.
    result = run_converter("create_coco_tfrecord", "--annotations_json", json_path, "--image_dir", image_dir,
                           "--output_prefix", prefix, "--num_shards", 3)

    line = the_error_line(result)
    assert "image id 4 (03.jpg)" in line and "cannot be decoded" in line and "--skip_invalid" in line, line
    assert snapshot(out) == before
    assert not glob.glob(prefix + "-*-of-00003.tfrecord")
    assert_no_empty_or_temporary_files(out)


def test_classification_failure_keeps_earlier_shards_and_label_map(tmp_path):
    from dataset.create_classification_tfrecord import convert_classification

    image_dir = tmp_path / "images"
    for name in ("cat", "dog"):
        (image_dir / name).mkdir(parents=True)
        for i in range(2):
            (image_dir / name / f"{i}.png").write_bytes(encode(detailed_image(24, 24, i), "PNG"))
    out = tmp_path / "out"
    prefix = str(out / "train")
    convert_classification(str(image_dir), prefix, num_shards=2)
    before = snapshot(out)
    assert "train_label_map.txt" in before
    # A new class whose only image is corrupt: the label map would change if it were written.
    (image_dir / "zebra").mkdir()
    (image_dir / "zebra" / "0.jpg").write_bytes(b"\xff\xd8\xff broken")

    result = run_converter("create_classification_tfrecord", "--image_dir", image_dir, "--output_prefix", prefix,
                           "--num_shards", 2)

    line = the_error_line(result)
    assert "zebra/0.jpg" in line and "cannot be decoded" in line, line
    assert snapshot(out) == before
    assert_no_empty_or_temporary_files(out)


XML = ("<annotation><filename>{name}.jpg</filename><size><width>40</width><height>32</height></size>"
       "<object><name>cat</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>20</xmax><ymax>20</ymax></bndbox>"
       "</object></annotation>")


def test_pascal_failure_keeps_earlier_shards_and_ground_truth_json(tmp_path):
    from dataset.create_pascal_tfrecord import convert_pascal

    voc = tmp_path / "VOCtiny"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    names = [f"img{i}" for i in range(3)]
    for i, name in enumerate(names):
        (voc / "JPEGImages" / f"{name}.jpg").write_bytes(encode(detailed_image(32, 40, i)))
        (voc / "Annotations" / f"{name}.xml").write_text(XML.format(name=name))
    (voc / "ImageSets" / "Main" / "val.txt").write_text("\n".join(names) + "\n")
    label_map = tmp_path / "labels.json"
    label_map.write_text(json.dumps({"cat": 1}))
    out = tmp_path / "out"
    prefix = str(out / "val")
    convert_pascal(str(tmp_path), prefix, years=["VOCtiny"], split="val", label_map_json=str(label_map),
                   num_shards=2)
    before = snapshot(out)
    assert "val_coco_gt.json" in before
    (voc / "JPEGImages" / "img2.jpg").write_bytes(b"not an image at all")

    result = run_converter("create_pascal_tfrecord", "--data_dir", tmp_path, "--year", "VOCtiny", "--set", "val",
                           "--label_map_json", label_map, "--output_prefix", prefix, "--num_shards", 2)

    line = the_error_line(result)
    assert "img2.jpg" in line and "cannot be decoded" in line, line
    assert snapshot(out) == before
    assert_no_empty_or_temporary_files(out)


def test_nothing_valid_with_skip_invalid_keeps_earlier_output(tmp_path):
    json_path, image_dir, out, prefix, before = _earlier_coco_output(tmp_path, 2)
    for name in ("00.jpg", "01.jpg"):
        with open(os.path.join(image_dir, name), "wb") as handle:
            handle.write(b"garbage")

    result = run_converter("create_coco_tfrecord", "--annotations_json", json_path, "--image_dir", image_dir,
                           "--output_prefix", prefix, "--num_shards", 2, "--skip_invalid")

    line = the_error_line(result)
    assert "no image to write" in line and "2 undecodable image" in line and "nothing was written" in line, line
    assert snapshot(out) == before


# ----------------------------------------------------------------------------- kill -9, then a good run


def _wait_for_temporaries(directory, process, timeout_s=TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = glob.glob(os.path.join(directory, f".tmp-{process.pid}-*.partial"))
        if found:
            return found
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"the converter ended (code {process.returncode}) before it was killed:\n{stderr[-3000:]}")
        time.sleep(0.02)
    pytest.fail("the converter made no temporary shard within the time limit")


@pytest.mark.slow  # two converter processes (each imports TensorFlow): 18-25 s on 2 busy cores
def test_kill_9_mid_conversion_keeps_earlier_output_and_next_run_cleans_up(tmp_path):
    from dataset.create_coco_tfrecord import convert_coco

    images = good_images(3)
    json_path, image_dir = write_coco(tmp_path, images)
    out = tmp_path / "out"
    prefix = str(out / "train")
    convert_coco(json_path, image_dir, prefix, num_shards=2)
    before = snapshot(out)
    # The last image becomes a named pipe: reading it blocks (like a stalled network file system), so the
    # converter is reliably mid-conversion, with its temporary shards open, when it is killed.
    last = os.path.join(image_dir, images[-1][0])
    os.remove(last)
    os.mkfifo(last)
    args = ["--annotations_json", json_path, "--image_dir", image_dir, "--output_prefix", prefix,
            "--num_shards", 2]
    process = subprocess.Popen(converter_command("create_coco_tfrecord", *args), cwd=REPO_ROOT, env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        temporaries = _wait_for_temporaries(str(out), process)
        time.sleep(0.2)  # let it reach the blocking read
        assert process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == -signal.SIGKILL

    after = snapshot(out)
    left = sorted(set(after) - set(before))
    assert {k: after[k] for k in before} == before  # earlier shards byte-identical
    assert left and all(name.startswith(f".tmp-{process.pid}-") and name.endswith(".partial") for name in left)
    assert sorted(glob.glob(prefix + "-*")) == sorted(str(out / name) for name in before)
    assert set(map(os.path.basename, temporaries)) <= set(left)

    os.remove(last)
    with open(last, "wb") as handle:
        handle.write(images[-1][1])
    result = run_converter("create_coco_tfrecord", *args)

    assert_success(result)
    assert "left incomplete by an interrupted earlier run" in result.stderr
    for name in left:
        assert name in result.stderr
    assert_no_empty_or_temporary_files(out)
    assert sorted(os.listdir(out)) == sorted(before)
    assert sorted(read_records(prefix + "-*")) == [name for name, _ in images]


# ----------------------------------------------------------------------------- another --num_shards


def test_success_with_other_num_shards_removes_the_old_shard_set(tmp_path):
    from dataset.create_coco_tfrecord import convert_coco

    images = good_images(4)  # one per shard: no empty shard in the old sets
    json_path, image_dir = write_coco(tmp_path, images)
    out = tmp_path / "out"
    convert_coco(json_path, image_dir, str(out / "train"), num_shards=4)
    # Other prefixes in the same folder must not be touched.
    convert_coco(json_path, image_dir, str(out / "val"), num_shards=4)
    convert_coco(json_path, image_dir, str(out / "train_extra"), num_shards=4)
    others = {k: v for k, v in snapshot(out).items() if not k.startswith("train-")}
    assert len(others) == 8

    result = run_converter("create_coco_tfrecord", "--annotations_json", json_path, "--image_dir", image_dir,
                           "--output_prefix", out / "train", "--num_shards", 2)

    assert_success(result)
    assert "removed 4 shard(s)" in result.stderr and "train-*-of-00004.tfrecord" in result.stderr, result.stderr
    assert sorted(glob.glob(str(out / "train-*"))) == [str(out / "train-00000-of-00002.tfrecord"),
                                                       str(out / "train-00001-of-00002.tfrecord")]
    assert {k: v for k, v in snapshot(out).items() if not k.startswith("train-")} == others
    assert sorted(read_records(str(out / "train-*"))) == [name for name, _ in images]
    assert_no_empty_or_temporary_files(out)


# ----------------------------------------------------------------------------- user mistakes: one line, exit 2


@contextlib.contextmanager
def _unwritable(directory):
    """Makes ``directory`` unwritable for the converters run by this test.

    Root ignores mode bits, so as root the folder is made immutable (``chattr
    +i``) instead; where that is not allowed the test is skipped.
    """
    if os.geteuid() != 0:
        os.chmod(directory, 0o555)
        try:
            yield
        finally:
            os.chmod(directory, 0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("running as root and cannot make a folder immutable (chattr +i), so no folder is unwritable")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)


def test_unwritable_output_directory(tmp_path):
    json_path, image_dir = write_coco(tmp_path, good_images(2))
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "keep.txt").write_text("earlier content")
    before = snapshot(tmp_path)

    with _unwritable(locked):
        result = run_converter("create_coco_tfrecord", "--annotations_json", json_path, "--image_dir", image_dir,
                               "--output_prefix", locked / "train", "--num_shards", 2)

    line = the_error_line(result)
    assert f"'{locked}' is not writable" in line and "--output_prefix" in line, line
    assert snapshot(tmp_path) == before


USER_ERRORS = {
    # case: (argument overrides, text the message must contain)
    "missing annotations": ({"--annotations_json": "{root}/nope.json"}, ["nope.json", "--annotations_json"]),
    "missing image folder": ({"--image_dir": "{root}/no_images"}, ["no_images", "--image_dir"]),
    "prefix under a file": ({"--output_prefix": "{root}/a_file/sub/train"},
                            ["a_file' is a file, not a directory", "--output_prefix"]),
    "prefix is a folder": ({"--output_prefix": "{root}/out"}, ["'{root}/out' is a directory", "out/train"]),
    "prefix ends with a slash": ({"--output_prefix": "{root}/new/"}, ["is a directory", "new/train"]),
    "report under a file": ({"--report_json": "{root}/a_file/report.json"},
                            ["--report_json", "a_file' is a file, not a directory"]),
    "no shards": ({"--num_shards": "0"}, ["--num_shards must be >= 1"]),
}


@pytest.mark.parametrize("case", sorted(USER_ERRORS))
def test_user_mistake_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    json_path, image_dir = write_coco(tmp_path, good_images(2))
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "out").mkdir()
    overrides, expected = USER_ERRORS[case]
    args = {"--annotations_json": json_path, "--image_dir": image_dir,
            "--output_prefix": str(tmp_path / "new_dir" / "train"), "--num_shards": "2"}
    args.update({k: v.format(root=tmp_path) for k, v in overrides.items()})
    before = snapshot(tmp_path)

    result = run_converter("create_coco_tfrecord", *[item for pair in args.items() for item in pair])

    line = the_error_line(result)
    for text in expected:
        assert text.format(root=tmp_path) in line, line
    assert snapshot(tmp_path) == before  # not even an empty folder


# ----------------------------------------------------------------------------- colour


def _mean_abs_error(jpeg_bytes, reference_rgb):
    import tensorflow as tf

    decoded = tf.io.decode_jpeg(jpeg_bytes, channels=0).numpy()
    assert decoded.shape == reference_rgb.shape
    return float(np.abs(decoded.astype(np.float64) - reference_rgb.astype(np.float64)).mean())


def test_converted_images_keep_colour_and_rgb_jpegs_are_stored_unchanged(tmp_path):
    sources = {
        "gray.png": encode(detailed_image(seed=1), "PNG", "L"),
        "rgba.png": encode(np.dstack([detailed_image(seed=2), np.full((48, 64), 200, np.uint8)]), "PNG"),
        "palette.png": encode(detailed_image(seed=3), "PNG", "P"),
        "cmyk.jpg": encode(detailed_image(seed=4), "JPEG", "CMYK", quality=95),
        "rgb.jpg": encode(detailed_image(seed=5), "JPEG", quality=80),  # 4:2:0, as most cameras write
        "progressive.jpg": encode(detailed_image(seed=6), "JPEG", quality=90, progressive=True),
    }
    json_path, image_dir = write_coco(tmp_path, list(sources.items()))
    prefix = str(tmp_path / "out" / "colour")
    report = tmp_path / "report.json"

    result = run_converter("create_coco_tfrecord", "--annotations_json", json_path, "--image_dir", image_dir,
                           "--output_prefix", prefix, "--num_shards", 1, "--report_json", report)

    assert_success(result)
    stored = read_records(prefix + "-*")
    assert sorted(stored) == sorted(sources)
    for name in ("rgb.jpg", "progressive.jpg"):
        assert stored[name] == sources[name], f"{name} was recompressed"
    for name in ("gray.png", "rgba.png", "palette.png", "cmyk.jpg"):
        assert stored[name][:3] == b"\xff\xd8\xff"
        reference = np.asarray(Image.open(io.BytesIO(sources[name])).convert("RGB"))
        error = _mean_abs_error(stored[name], reference)
        assert error <= 4.0, f"{name}: mean colour error {error:.1f} levels (4:2:0 gives 20-50)"
    converted = json.loads(report.read_text())["converted_to_rgb_jpeg"]
    assert sum(converted.values()) == 4, converted
    assert_no_empty_or_temporary_files(tmp_path / "out")
