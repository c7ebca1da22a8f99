"""The convert-once tool: official checkpoint → our format → same outputs as the official model."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from common.checkpoints import CheckpointError, restore_for_inference, restore_with_report
from common.checkpoints.convert import write_model_checkpoint
from common.checkpoints.import_cli import main as import_main
from efficientdet.builder import build_efficientdet
from efficientnet_v2.network import build_classifier

REPO = pathlib.Path(__file__).resolve().parents[2]
MEAN = np.array([123.675, 116.28, 103.53], "float32")
STD = np.array([58.395, 57.12, 57.375], "float32")
EMA = "/ExponentialMovingAverage"


def _summary(output_dir):
    return json.loads((output_dir / "import_summary.json").read_text())


@pytest.mark.slow
def test_d0_conversion_gives_the_official_raw_outputs(automl_fixtures, tmp_path):
    fixture = automl_fixtures / "effdet_d0"
    output = tmp_path / "d0"
    code = import_main(["--model_name", "efficientdet-d0", "--ckpt", str(fixture / "tf1_ema_ckpt"),
                        "--output_dir", str(output)])
    assert code == 0
    counts = _summary(output)["counts"]
    assert counts == {"loaded": 709, "from_ema": 709, "missing": 0, "skipped_shape": 0,
                      "unused": 0}
    assert (output / "config.yaml").is_file()
    model = build_efficientdet("efficientdet-d0", num_classes=90, image_size=512)
    message = restore_for_inference(model, str(output))
    assert "training checkpoint" in message and "709 variables" in message, message
    outputs = model((np.load(fixture / "input.npy") - MEAN) / STD, training=False)
    raw = np.load(fixture / "raw_outputs.npz")
    for level, cls, box in zip(range(3, 8), outputs["class_outputs"], outputs["box_outputs"]):
        np.testing.assert_allclose(np.asarray(cls), raw[f"class_l{level}"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.asarray(box), raw[f"box_l{level}"], atol=1e-4, rtol=0)


def test_v2_conversion_with_other_classes(automl_fixtures, tmp_path, capsys):
    checkpoint = str(automl_fixtures / "effnetv2_b0" / "tf1_ema_ckpt")
    args = ["--model_name", "efficientnetv2-b0", "--ckpt", checkpoint, "--num_classes", "5",
            "--hparams", "image_size=64"]
    assert import_main(args + ["--output_dir", str(tmp_path / "refused")]) == 2
    assert "--skip_mismatch" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()

    output = tmp_path / "v2"
    assert import_main(args + ["--output_dir", str(output), "--skip_mismatch"]) == 0
    summary = _summary(output)
    assert summary["counts"]["loaded"] == 359 and summary["counts"]["skipped_shape"] == 2
    assert {s["name"] for s in summary["skipped_shape"]} == {
        "efficientnetv2-b0/head/dense/kernel", "efficientnetv2-b0/head/dense/bias"}

    reader = tf.train.load_checkpoint(checkpoint)
    model = build_classifier("efficientnetv2-b0", num_classes=5, image_size=(64, 64))
    restore_for_inference(model, str(output))
    stem = next(v for v in model.weights if v.path.endswith("stem/conv2d/kernel"))
    np.testing.assert_array_equal(np.asarray(stem),
                                  reader.get_tensor("efficientnetv2-b0/stem/conv2d/kernel" + EMA))

    # Fine-tuning from the converted checkpoint with yet another number of classes
    # (what main.py --init_checkpoint does): only the classifier is re-initialized.
    other = build_classifier("efficientnetv2-b0", num_classes=3, image_size=(64, 64))
    with pytest.raises(CheckpointError, match="other shapes"):
        restore_with_report(other, str(output))
    result = restore_with_report(other, str(output), skip_mismatch=True)
    assert result.loaded == 359
    assert result.skipped == ["efficientnetv2-b0/head/dense/kernel",
                              "efficientnetv2-b0/head/dense/bias"]
    stem = next(v for v in other.weights if v.path.endswith("stem/conv2d/kernel"))
    np.testing.assert_array_equal(np.asarray(stem),
                                  reader.get_tensor("efficientnetv2-b0/stem/conv2d/kernel" + EMA))


def test_backbone_only_checkpoint_into_a_detector(automl_fixtures, tmp_path):
    # A backbone-only checkpoint (released EfficientNet layout) cut from the D0 fixture.
    reader = tf.train.load_checkpoint(str(automl_fixtures / "effdet_d0" / "tf1_ema_ckpt"))
    names = sorted(k for k in reader.get_variable_to_shape_map() if k.startswith("efficientnet-b0/"))
    prefix = str(tmp_path / "backbone" / "model")
    tf.io.gfile.makedirs(str(tmp_path / "backbone"))
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[reader.get_tensor(n) for n in names])
    output = tmp_path / "d0"
    assert import_main(["--ckpt", prefix, "--output_dir", str(output), "--num_classes", "3",
                        "--hparams", "image_size=128"]) == 0
    counts = _summary(output)["counts"]
    assert counts["loaded"] == 304 and counts["from_ema"] == 304
    assert counts["missing"] == 709 - 304 and counts["skipped_shape"] == 0


def test_user_errors_are_one_message(automl_fixtures, tmp_path, capsys):
    missing = import_main(["--ckpt", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "o")])
    assert missing == 2 and "not found" in capsys.readouterr().err
    foreign = import_main(["--model_name", "efficientnetv2-b0", "--output_dir", str(tmp_path / "o"),
                           "--ckpt", str(automl_fixtures / "effdet_d0" / "tf1_ema_ckpt")])
    assert foreign == 2 and "shares no variable names" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    ours = tmp_path / "ours"
    write_model_checkpoint(build_classifier("efficientnetv2-b0", num_classes=2), str(ours))
    again = import_main(["--model_name", "efficientnetv2-b0", "--ckpt", str(ours),
                         "--output_dir", str(tmp_path / "o")])
    assert again == 2 and "already in our checkpoint format" in capsys.readouterr().err


def test_module_entry_point_reports_a_bad_path(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "efficientnet_v2.import_checkpoint", "--ckpt",
         str(tmp_path / "missing"), "--output_dir", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Checkpoint" in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.stderr
