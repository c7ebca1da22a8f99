"""benchmarks/gpu_network.py: its losses are the project's, and the script runs
with nothing but keras + jax (the acceptance test builds a fresh virtualenv)."""
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import gpu_network

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_network.py"
PINS = ("keras==3.15.1", "jax==0.7.2", "jaxlib==0.7.2")


def _level_inputs(rng, batch=2, num_classes=7, num_anchors=9, sides=(8, 4, 2, 1, 1)):
    """Random per-level outputs and targets with positives, negatives and ignored anchors."""
    class_outputs, box_outputs, cls_targets, box_targets = [], [], [], []
    for side in sides:
        shape = (batch, side, side, num_anchors)
        class_outputs.append(rng.normal(0, 3, shape[:3] + (num_anchors * num_classes,)).astype(np.float32))
        box_outputs.append(rng.normal(0, 0.3, shape[:3] + (num_anchors * 4,)).astype(np.float32))
        kind = rng.random(shape)
        labels = np.where(kind < 0.2, rng.integers(0, num_classes, shape), -1)
        cls_targets.append(np.where(kind > 0.9, -2, labels).astype(np.int32))
        box_targets.append(rng.normal(0, 0.3, shape[:3] + (num_anchors * 4,)).astype(np.float32))
    return class_outputs, box_outputs, cls_targets, box_targets


def test_losses_equal_the_projects_losses():
    from efficientdet import losses

    rng = np.random.default_rng(7)
    logits = rng.normal(0, 4, (3, 5, 11)).astype(np.float32)
    labels = (rng.random((3, 5, 11)) < 0.3).astype(np.float32)
    np.testing.assert_allclose(np.asarray(gpu_network.focal_loss(logits, labels)),
                               losses.focal_loss(logits, labels, 0.25, 1.5).numpy(), rtol=1e-6, atol=1e-6)
    errors = rng.normal(0, 0.2, (4, 9)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(gpu_network.huber(errors, 0.1)),
                               losses.huber(errors, 0.1).numpy(), rtol=1e-6, atol=1e-6)

    num_classes = 7
    class_outputs, box_outputs, cls_targets, box_targets = _level_inputs(rng, num_classes=num_classes)
    ours = gpu_network.detection_loss(class_outputs, box_outputs, cls_targets, box_targets, num_classes)
    targets = {f"cls_targets_{level}": t for level, t in zip(range(3, 8), cls_targets)}
    targets.update({f"box_targets_{level}": t for level, t in zip(range(3, 8), box_targets)})
    targets["num_positives"] = sum((t >= 0).reshape(t.shape[0], -1).sum(1) for t in cls_targets)
    theirs = losses.detection_loss(class_outputs, box_outputs, targets, num_classes)
    assert targets["num_positives"].sum() > 10
    for value, key in zip(ours, ("total_loss", "cls_loss", "box_loss")):
        np.testing.assert_allclose(float(value), float(theirs[key]), rtol=1e-6, atol=1e-6)


def test_synthetic_targets_are_seeded_with_about_one_percent_positives():
    levels = [(2, 64, 64), (2, 32, 32), (2, 16, 16), (2, 8, 8), (2, 4, 4)]
    cls_a, box_a = gpu_network.synthetic_detection_targets(levels, 9, seed=3)
    cls_b, _ = gpu_network.synthetic_detection_targets(levels, 9, seed=3)
    assert all((a == b).all() for a, b in zip(cls_a, cls_b))
    labels = np.concatenate([t.ravel() for t in cls_a])
    assert 0.007 < (labels >= 0).mean() < 0.013 and set(np.unique(labels[labels < 0])) == {-1}
    assert labels.max() < gpu_network.NUM_DETECTION_CLASSES
    assert box_a[0].shape == (2, 64, 64, 36) and box_a[0].dtype == np.float32


def test_classification_loss_is_smoothed_cross_entropy():
    import keras

    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (4, 10)).astype(np.float32)
    labels = np.array([0, 3, 9, 3])
    reference = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(
        np.eye(10, dtype=np.float32)[labels], logits)
    np.testing.assert_allclose(float(gpu_network.classification_loss(logits, labels, 10)),
                               float(reference), rtol=1e-6)


def test_importing_the_module_imports_neither_jax_nor_keras():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('jax', 'keras', 'tensorflow'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import benchmarks.gpu_network as g\n"
            "print(g.case_plan(g.parse_args(['--quick'])))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "('efficientdet-d0', 128, [1]), ('efficientnetv2-s', 64, [1])" in out.stdout


def test_arguments():
    args = gpu_network.parse_args(["--image_size", "efficientdet-d0=640", "--batch_sizes", "4,16"])
    assert gpu_network.case_plan(args) == [("efficientdet-d0", 640, [4, 16]),
                                          ("efficientnetv2-s", 300, [4, 16])]
    assert args.policies == ["float32", "mixed_bfloat16", "mixed_float16"]
    assert (args.warmup, args.steps) == (5, 20)
    quick = gpu_network.parse_args(["--quick"])
    assert quick.policies == ["float32"] and (quick.warmup, quick.steps) == (1, 1)


@pytest.mark.parametrize("args, message", [
    (["--policies", "float8"], "--policies"), (["--modes", "backward"], "--modes"),
    (["--models", "resnet50"], "unknown model"), (["--image_size", "d9=3"], "--image_size")])
def test_bad_arguments_are_one_clear_line(args, message, capsys):
    with pytest.raises(SystemExit) as stop:
        gpu_network.parse_args(args)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_markdown_marks_failures_and_ratios():
    ok = dict(model="efficientnetv2-s", image_size=64, batch=1, policy="float32", mode="train",
              compile_s=3.0, median_ms=10.0, min_ms=9.0, images_per_s=100.0, xla_step_mib=5.0,
              peak_device_mib=None)
    failed = dict(ok, policy="mixed_float16", error="XlaRuntimeError: UNIMPLEMENTED | f16")
    theirs = dict(ok, images_per_s=50.0)
    table = gpu_network.markdown([ok, failed], [theirs]).splitlines()
    assert table[0].endswith("| torch images/s | ours/torch |")
    assert table[2].endswith("| 100.0 | 5 | – | 50.0 | 2.00 |")
    assert "FAILED: XlaRuntimeError: UNIMPLEMENTED / f16" in table[3]


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "XLA_FLAGS", "PYTHONSTARTUP")}
    env.update(extra)
    return env


@pytest.mark.slow
def test_quick_run_in_a_fresh_venv_with_only_keras_and_jax(tmp_path, record_property):
    """Acceptance: ``--quick`` in a virtualenv holding only keras + jax + jaxlib
    (no TensorFlow, no PyYAML, no toolkit install), run from outside the repository."""
    started = time.monotonic()
    base = getattr(sys, "_base_executable", sys.executable)
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    made = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True,
                          env=_clean_env(), timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--only-binary=:all:", *PINS],
        capture_output=True, text=True, env=_clean_env(), timeout=900)
    assert install.returncode == 0, install.stdout[-5000:] + install.stderr[-5000:]
    install_s = time.monotonic() - started
    for module in ("tensorflow", "yaml"):
        probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True,
                               text=True, env=_clean_env(), timeout=120)
        assert probe.returncode != 0, f"{module} is importable in the fresh venv"

    work = tmp_path / "elsewhere"
    work.mkdir()
    output = work / "quick.json"
    run_started = time.monotonic()
    run = subprocess.run([str(python), str(SCRIPT), "--quick", "--output_json", str(output)],
                         cwd=work, capture_output=True, text=True,
                         env=_clean_env(KERAS_BACKEND="jax"), timeout=1800)
    run_s = time.monotonic() - run_started
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]

    report = json.loads(output.read_text())
    env = report["environment"]
    assert (env["keras"], env["jax"], env["jaxlib"], env["keras_backend"]) == ("3.15.1", "0.7.2", "0.7.2", "jax")
    assert env["device_count"] >= 1 and env["device_kind"] and env["python"]
    assert env["tensorflow_imported"] is False and env["tensorflow_importable"] is False
    rows = {(r["model"], r["image_size"], r["batch"], r["policy"], r["mode"]): r for r in report["results"]}
    expected = {(model, size, 1, policy, mode)
                for model, size in (("efficientdet-d0", 128), ("efficientnetv2-s", 64))
                for policy in ("float32",) for mode in ("forward", "train")}
    assert set(rows) == expected
    for key, row in rows.items():
        assert "error" not in row, (key, row["error"])
        assert row["images_per_s"] > 0 and row["median_ms"] > 0 and row["compile_s"] > 0, key
        if key[-1] == "train":
            assert row["grads_finite"] and np.isfinite(row["loss"]), key
    assert "| efficientdet-d0 | 128² | 1 | float32 | train |" in run.stdout

    total_s = time.monotonic() - started
    record_property("venv_install_s", round(install_s, 1))
    record_property("quick_run_s", round(run_s, 1))
    print(f"\nfresh venv + pip install {install_s:.1f} s, --quick run {run_s:.1f} s, "
          f"total {total_s:.1f} s")
