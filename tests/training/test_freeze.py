"""train.freeze / --freeze: presets and regexes freeze exactly the intended variables,
frozen weights (and frozen batch-norm statistics) stay fixed while the rest trains."""
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import yaml

from common.config import ConfigError, build_network, load_config
from common.training.freeze import apply_freeze

REPO = pathlib.Path(__file__).resolve().parents[2]


def _frozen_model(model_name, freeze, **overrides):
    items = [f"train.freeze={freeze}"] + [f"{k}={v}" for k, v in overrides.items()]
    config = load_config(model_name=model_name, overrides=items)
    model = build_network(config)
    trainable = [v.path for v in model.trainable_variables]
    result = apply_freeze(model, config)
    return model, trainable, result


def _batch_norms(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def test_detector_presets():
    model, trainable, result = _frozen_model("efficientdet-d0", "backbone",
                                             **{"model.image_size": 128})
    expected = [p for p in trainable if p.startswith("efficientnet-b0/")]
    assert result.frozen == expected and len(expected) == 208  # official: 208 trainable backbone weights
    assert [v.path for v in model.trainable_variables] == \
        [p for p in trainable if not p.startswith("efficientnet-b0/")]
    inference = [bn for bn in _batch_norms(model) if not bn.trainable]
    assert len(inference) == result.inference_bn_layers == 48
    assert all(bn.weights[0].path.startswith("efficientnet-b0/") for bn in inference)

    model, trainable, result = _frozen_model("efficientdet-d0", "backbone+bifpn",
                                             **{"model.image_size": 128})
    heads = [p for p in trainable if p.startswith(("class_net/", "box_net/"))]
    assert [v.path for v in model.trainable_variables] == heads
    assert len(result.frozen) == len(trainable) - len(heads)
    assert all(bn.trainable == bn.weights[0].path.startswith(("class_net/", "box_net/"))
               for bn in _batch_norms(model))


def test_classifier_backbone_leaves_only_the_classification_layer():
    model, trainable, result = _frozen_model("efficientnetv2-b0", "backbone")
    assert [v.path for v in model.trainable_variables] == [
        "efficientnetv2-b0/head/dense/kernel", "efficientnetv2-b0/head/dense/bias"]
    assert len(result.frozen) == len(trainable) - 2
    assert all(not bn.trainable for bn in _batch_norms(model))


def test_regex_freezes_the_matching_variables_only():
    model, trainable, result = _frozen_model("efficientnetv2-b0",
                                             "re:efficientnetv2-b0/blocks_[0-3]/")
    blocks = ("blocks_0/", "blocks_1/", "blocks_2/", "blocks_3/")
    expected = [p for p in trainable if p.split("/", 1)[1].startswith(blocks)]
    assert result.frozen == expected and expected
    assert len(model.trainable_variables) == len(trainable) - len(expected)
    # Only gamma frozen: the layer keeps a trainable beta, so it stays in training mode.
    model, _, result = _frozen_model("efficientnetv2-b0", "re:.*stem/.*gamma")
    assert len(result.frozen) == 1 and result.inference_bn_layers == 0


@pytest.mark.parametrize("freeze, message", [
    ("backbones", "train.freeze 'backbones' is not one of"),
    ("re:blocks_[0-3", "train.freeze 're:blocks_\\[0-3': invalid regular expression"),
    ("'re:'", "needs a regular expression"),  # quoted: YAML reads a bare re: as a mapping
])
def test_bad_freeze_values_name_the_key(freeze, message):
    with pytest.raises(ConfigError, match=message):
        load_config(model_name="efficientdet-d0", overrides=[f"train.freeze={freeze}"])


def test_freeze_that_does_not_apply_is_refused():
    with pytest.raises(ConfigError, match="'backbone\\+bifpn' needs a detector"):
        _frozen_model("efficientnetv2-b0", "backbone+bifpn")
    with pytest.raises(ConfigError, match="matches none of the"):
        _frozen_model("efficientnetv2-b0", "re:efficientnet-b0/")


@pytest.mark.slow
def test_frozen_weights_do_not_change_while_others_train(sample_data, tmp_path):
    from common.checkpoints.convert import write_model_checkpoint
    from common.training.runner import RunOptions, train

    overrides = [
        "model.image_size=64", "model.train_image_size=64", "model.progressive.n_stages=1",
        "model.num_classes=4", "model.dropout_rate=0", "model.drop_path_rate=0",
        "train.batch_size=4", "train.steps_per_epoch=2", "train.num_epochs=1",
        "train.lr_warmup_epoch=0", "train.lr_decay_method=constant", "train.seed=1",
        "train.freeze=re:efficientnetv2-b0/(stem|blocks_[0-9])/",
        f"data.train_file_pattern={sample_data['classification_train_file_pattern']}",
        f"runtime.model_dir={tmp_path / 'run'}"]
    config = load_config(model_name="efficientnetv2-b0", overrides=overrides)
    initial = build_network(config)
    write_model_checkpoint(initial, str(tmp_path / "init"))
    before = {v.path: np.asarray(v).copy() for v in initial.weights}

    result = train(config, RunOptions(init_checkpoint=str(tmp_path / "init")))
    assert result["steps"] == 2
    frozen_prefixes = tuple(f"efficientnetv2-b0/{s}" for s in
                            ["stem/"] + [f"blocks_{i}/" for i in range(10)])
    changed = {v.path: not np.array_equal(before[v.path], np.asarray(v))
               for v in result["model"].weights}
    frozen = [p for p in changed if p.startswith(frozen_prefixes)]
    assert frozen and not any(changed[p] for p in frozen)  # BN statistics included
    trained = [v.path for v in result["model"].trainable_variables]
    assert trained and not set(trained) & set(frozen)
    assert all(changed[p] for p in trained), [p for p in trained if not changed[p]]


def test_main_freeze_flag_sets_the_config_key(tmp_path):
    regex = "re:efficientnetv2-b0/blocks_[0-3]/"
    result = subprocess.run(
        [sys.executable, "main.py", "--mode", "summary", "--model_name", "efficientnetv2-b0",
         "--hparams", "num_classes=3,image_size=64", "--model_dir", str(tmp_path),
         "--freeze", regex], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert written["train"]["freeze"] == regex
