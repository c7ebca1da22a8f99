"""Config system: YAML recipes, precedence, unknown keys, validation, round trip."""
import dataclasses
import pathlib

import pytest

from common.config import ConfigError, dump_config, load_config, parse_overrides

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"
ALL_CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_there_are_recipes():
    names = {p.name for p in ALL_CONFIGS}
    assert {"efficientdet-d0-coco.yaml", "efficientnetv2-s-imagenet.yaml"} <= names


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: p.name)
def test_every_recipe_loads_and_round_trips(path, tmp_path):
    config = load_config(str(path))
    dumped = tmp_path / "config.yaml"
    dump_config(config, str(dumped))
    assert load_config(str(dumped)) == config


def test_defaults_and_presets():
    d0 = load_config(model_name="efficientdet-d0")
    assert d0.task == "detection"
    assert d0.model.image_size == (512, 512) and d0.model.fpn_num_filters == 64
    d3 = load_config(model_name="efficientdet-d3")
    assert d3.model.image_size == (896, 896) and d3.model.backbone_name == "efficientnet-b3"
    v2 = load_config(model_name="efficientnetv2-s")
    assert v2.task == "classification"
    assert v2.model.image_size == (384, 384) and v2.model.train_image_size == (300, 300)
    assert v2.train.optimizer == "rmsprop" and v2.train.moving_average_decay == 0.9999


def test_precedence_defaults_preset_yaml_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  name: efficientdet-d1\n  num_classes: 20\ntrain:\n  batch_size: 4\n")
    config = load_config(str(recipe))
    assert config.model.image_size == (640, 640)  # preset of d1
    assert config.model.num_classes == 20  # YAML over default
    assert config.train.batch_size == 4
    config = load_config(str(recipe), hparams="num_classes=5,train.batch_size=2",
                         overrides=["train.batch_size=3", "model.image_size=640x384"])
    assert config.model.num_classes == 5
    assert config.train.batch_size == 3  # --override after --hparams
    assert config.model.image_size == (640, 384)
    assert config.model.fpn_num_filters == 88


def test_model_name_override_switches_family():
    config = load_config(str(CONFIG_DIR / "efficientdet-d0-coco.yaml"),
                         hparams="model.name=efficientdet-d2")
    assert config.model.name == "efficientdet-d2"
    assert config.model.backbone_name == "efficientnet-b2"


def test_unknown_key_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"'model.num_clases'.*'num_classes'"):
        load_config(overrides=["model.num_clases=3"])
    with pytest.raises(ConfigError, match=r"'learning_rat'.*learning_rate"):
        load_config(hparams="learning_rat=0.1")
    with pytest.raises(ConfigError, match=r"section 'trian'.*'train'"):
        load_config(overrides=["trian.batch_size=3"])


def test_unknown_key_in_yaml(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model:\n  name: efficientdet-d0\ntrain:\n  batch_sise: 4\n")
    with pytest.raises(ConfigError, match=r"'train.batch_sise'.*'batch_size'"):
        load_config(str(recipe))


def test_unknown_model_name():
    with pytest.raises(ConfigError, match=r"'efficientdet-d9'.*efficientdet-d"):
        load_config(model_name="efficientdet-d9")


def test_ambiguous_bare_key():
    with pytest.raises(ConfigError, match=r"ambiguous.*eval.batch_size.*train.batch_size|"
                                          r"ambiguous.*train.batch_size"):
        load_config(hparams="batch_size=4")


@pytest.mark.parametrize(
    "override,message",
    [
        ("image_size=500", r"multiples of 8"),
        ("image_size=640x302", r"multiples of 8"),
        ("num_classes=0", r"num_classes must be >= 1"),
        ("train.batch_size=abc", r"train.batch_size: expected an integer"),
        ("train.optimizer=adagrad", r"train.optimizer 'adagrad'"),
        ("runtime.use_xla=maybe", r"runtime.use_xla: expected true or false"),
        ("model.nms.method=fast", r"model.nms.method 'fast'"),
    ],
)
def test_values_are_validated(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(model_name="efficientdet-d0", overrides=[override])


def test_missing_file_error():
    with pytest.raises(ConfigError, match=r"'nope.yaml' does not exist"):
        load_config("nope.yaml")


def test_configs_are_frozen():
    config = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model.num_classes = 3


def test_parse_overrides_keeps_lists_together():
    pairs = parse_overrides("aspect_ratios=[1.0,2.0],model.num_classes=3", ["a.b=x"])
    assert pairs == [("aspect_ratios", [1.0, 2.0]), ("model.num_classes", 3), ("a.b", "x")]
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides("num_classes")


def test_nested_sections_round_trip(tmp_path):
    config = load_config(hparams="model.loss.iou_loss_type=giou,model.nms.method=hard,"
                                 "aspect_ratios=[1.0,0.5],image_size=256x384")
    assert config.model.loss.iou_loss_type == "giou"
    assert config.model.aspect_ratios == (1.0, 0.5)
    path = tmp_path / "c.yaml"
    dump_config(config, str(path))
    assert load_config(str(path)) == config
