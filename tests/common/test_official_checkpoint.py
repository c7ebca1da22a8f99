"""Official google/automl checkpoints load into our classifier with identical outputs."""
import shutil

import numpy as np
import pytest

from common.checkpoints import CheckpointError, load_official_checkpoint, official_name
from efficientnet_v2.network import build_classifier

MEAN = np.array([123.675, 116.28, 103.53], "float32")
STD = np.array([58.395, 57.12, 57.375], "float32")




def test_official_name_rename():
    assert official_name("x/blocks_1/depthwise_conv2d/kernel") == \
        "x/blocks_1/depthwise_conv2d/depthwise_kernel"
    assert official_name("x/blocks_1/conv2d/kernel") == "x/blocks_1/conv2d/kernel"


def test_v2_b0_logits_match_official(automl_fixtures):
    fixture = automl_fixtures / "effnetv2_b0"
    model = build_classifier("efficientnetv2-b0", num_classes=1000, image_size=(224, 224))
    report = load_official_checkpoint(model, str(fixture / "tf1_ema_ckpt"))
    assert len(report.loaded) == 361 and report.used_ema == 361
    assert not report.missing and not report.unused and not report.skipped_shape
    images = np.load(fixture / "input.npy")
    expected = np.load(fixture / "outputs.npz")
    logits = np.asarray(model((images - MEAN) / STD, training=False))
    np.testing.assert_allclose(logits, expected["logits"], atol=1e-4, rtol=0)
    logits_128 = np.asarray(model((images - 128.0) / 128.0, training=False))
    np.testing.assert_allclose(logits_128, expected["logits_pre128"], atol=1e-4, rtol=0)
    assert np.argmax(logits_128) == np.argmax(expected["logits_pre128"])


def test_fine_tuning_with_other_classes_skips_only_the_classifier(automl_fixtures):
    fixture = automl_fixtures / "effnetv2_b0"
    model = build_classifier("efficientnetv2-b0", num_classes=10, image_size=(64, 64))
    with pytest.raises(CheckpointError, match=r"head/dense/kernel: model \(1280, 10\)"):
        load_official_checkpoint(model, str(fixture / "tf1_ema_ckpt"))
    before = {v.path: np.asarray(v) for v in model.weights}
    report = load_official_checkpoint(model, str(fixture / "tf1_ema_ckpt"), skip_mismatch=True)
    skipped = {name for name, *_ in report.skipped_shape}
    assert skipped == {"efficientnetv2-b0/head/dense/kernel", "efficientnetv2-b0/head/dense/bias"}
    assert len(report.loaded) == 359
    for variable in model.weights:
        unchanged = np.array_equal(before[variable.path], np.asarray(variable))
        assert unchanged == ("head/dense" in variable.path), variable.path


def test_foreign_checkpoint_is_refused_without_partial_load(automl_fixtures):
    model = build_classifier("efficientnetv2-b0", num_classes=1000, image_size=(64, 64))
    before = [np.asarray(v).copy() for v in model.weights]
    with pytest.raises(CheckpointError, match="shares no variable names"):
        load_official_checkpoint(model, str(automl_fixtures / "effdet_d0" / "tf1_ema_ckpt"))
    assert all(np.array_equal(b, np.asarray(v)) for b, v in zip(before, model.weights))


def test_corrupted_checkpoint_is_refused(automl_fixtures, tmp_path):
    source = automl_fixtures / "effnetv2_b0" / "tf1_ema_ckpt"
    target = tmp_path / "ckpt"
    shutil.copytree(source, target)
    data = next(target.glob("model.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    model = build_classifier("efficientnetv2-b0", num_classes=1000, image_size=(64, 64))
    before = [np.asarray(v).copy() for v in model.weights]
    with pytest.raises(CheckpointError, match="corrupted"):
        load_official_checkpoint(model, str(target))
    assert all(np.array_equal(b, np.asarray(v)) for b, v in zip(before, model.weights))
    (target / "model.index").write_bytes(b"not an index")
    with pytest.raises(CheckpointError, match="unreadable or corrupted"):
        load_official_checkpoint(model, str(target))


def test_missing_checkpoint_path(tmp_path):
    model = build_classifier("efficientnetv2-b0", num_classes=3, image_size=(64, 64))
    with pytest.raises(CheckpointError, match="not found"):
        load_official_checkpoint(model, str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="No checkpoint in directory"):
        load_official_checkpoint(model, str(tmp_path))
