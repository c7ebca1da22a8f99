"""The command-line tools, run as a user would."""
import pathlib
import subprocess
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_main_summary_writes_resolved_config(tmp_path):
    result = _run("main.py", "--mode", "summary", "--model_name", "efficientnetv2-b0",
                  "--hparams", "num_classes=3,image_size=64", "--model_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "efficientnetv2-b0: 5,862,547 trainable + 60,608 non-trainable" in result.stdout
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert written["model"]["num_classes"] == 3 and written["model"]["image_size"] == [64, 64]


def test_main_bad_key_is_one_clear_error():
    result = _run("main.py", "--model_name", "efficientdet-d0", "--hparams", "num_clases=3")
    assert result.returncode == 2
    assert "Unknown config key 'num_clases'" in result.stderr
    assert "num_classes" in result.stderr
    assert "Traceback" not in result.stderr


def test_model_inspect_stats(tmp_path):
    out = tmp_path / "stats.json"
    result = _run("model_inspect.py", "--runmode", "stats", "--model_name", "efficientdet-d0",
                  "--output_json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    stats = yaml.safe_load(out.read_text())
    assert stats["trainable_parameters"] == 3_880_067
    assert stats["non_trainable_parameters"] == 47_136
    assert stats["multiply_adds"] == 2_492_331_520
