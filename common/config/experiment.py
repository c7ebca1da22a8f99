"""Experiment config: model section (family-specific) + data/train/eval/runtime.

The model section's class, the presets of each model name and the network
builder come from the model's :class:`common.families.ModelFamily`, found in
the registry :data:`common.families.FAMILIES` by model name (``common`` never
imports a model package; ``model_zoo`` registers them).
"""
from __future__ import annotations

import dataclasses
import os
import typing

from common.config.errors import ConfigError
from common.config.loader import _suggest, deep_merge, from_dict, parse_overrides, to_dict
from common.config.schema import DataConfig, EvalConfig, RuntimeConfig, TrainConfig

DEFAULT_MODEL_NAME = "efficientdet-d0"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A resolved experiment. ``model`` is the family's model config."""

    model: typing.Any
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @property
    def family(self):
        """The :class:`common.families.ModelFamily` of ``model.name``."""
        return family_of(self.model.name)

    @property
    def task(self):
        """``"detection"`` or ``"classification"`` (the family's)."""
        return self.family.task


def family_of(model_name):
    """The registered :class:`common.families.ModelFamily` that builds ``model_name``.

    Raises:
        ConfigError: for a name no family knows, with the closest valid names.
    """
    from common.families import FAMILIES

    return FAMILIES.for_model(model_name)


def _section_fields():
    return {
        "data": DataConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
        "runtime": RuntimeConfig,
    }


def _nest_override(key, value, model_cls):
    """Turns ``a.b=v`` into ``{"a": {"b": v}}``; a bare key is looked up as a
    field of exactly one section (``num_classes`` → ``model.num_classes``)."""
    sections = dict(_section_fields(), model=model_cls)
    parts = key.split(".")
    if len(parts) == 1:
        owners = [s for s, cls in sections.items()
                  if parts[0] in {f.name for f in dataclasses.fields(cls)}]
        if not owners:
            all_keys = {f"{s}.{f.name}" for s, cls in sections.items()
                        for f in dataclasses.fields(cls)}
            all_keys |= {f.name for cls in sections.values() for f in dataclasses.fields(cls)}
            raise ConfigError(f"Unknown config key {key!r}: {_suggest(key, all_keys)}")
        if len(owners) > 1:
            raise ConfigError(
                f"Config key {key!r} is ambiguous; write one of "
                + ", ".join(f"{o}.{key}" for o in owners) + "."
            )
        parts = [owners[0]] + parts
    if parts[0] not in sections:
        raise ConfigError(f"Unknown config section {parts[0]!r} in {key!r}: "
                          f"{_suggest(parts[0], sections)}")
    nested = value
    for part in reversed(parts):
        nested = {part: nested}
    return nested


def load_config_file(path):
    """Reads a YAML config file into a nested dict.

    Raises:
        ConfigError: if the file is missing or is not a YAML mapping.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"Config file {path!r} does not exist; see configs/ for the recipes.")
    import yaml  # lazily, like dump_config: building a network needs no PyYAML

    with open(path) as handle:
        try:
            data = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"Config file {path!r} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path!r} must hold a mapping of sections.")
    return data


def load_config(config_file=None, model_name=None, hparams=None, overrides=(), base=None):
    """Resolves an experiment config.

    Precedence: defaults < presets of the model name < ``base`` dict <
    ``config_file`` < ``model_name`` argument < ``hparams`` < ``overrides``.

    Args:
        config_file: path of a YAML recipe (e.g. ``configs/efficientdet-d0-coco.yaml``).
        model_name: overrides ``model.name`` (e.g. ``efficientnetv2-s``).
        hparams: ``"a.b=1,c=2"`` overrides.
        overrides: list of ``"a.b=1"`` overrides.
        base: an optional nested dict applied before the file.

    Returns:
        A frozen :class:`ExperimentConfig`.

    Raises:
        ConfigError: unknown key / model, bad value, missing file.
    """
    raw = dict(base or {})
    if config_file:
        raw = deep_merge(raw, load_config_file(config_file))
    if model_name:
        raw = deep_merge(raw, {"model": {"name": model_name}})
    pairs = parse_overrides(hparams, overrides)
    name_overrides = [v for k, v in pairs if k in ("model.name", "name")]
    if name_overrides:
        raw = deep_merge(raw, {"model": {"name": name_overrides[-1]}})
    name = (raw.get("model") or {}).get("name", DEFAULT_MODEL_NAME)
    family = family_of(str(name))
    for key, value in pairs:
        raw = deep_merge(raw, _nest_override(key, value, family.config_class))
    unknown = sorted(set(raw) - {"model", *_section_fields()})
    if unknown:
        raise ConfigError(f"Unknown config section {unknown[0]!r}: "
                          f"{_suggest(unknown[0], ['model', *_section_fields()])}")
    merged = deep_merge(family.presets(str(name)), raw)
    merged.setdefault("model", {})["name"] = str(name)
    sections = {
        key: from_dict(cls, merged.get(key, {}), key) for key, cls in _section_fields().items()
    }
    model = from_dict(family.config_class, merged["model"], "model")
    return ExperimentConfig(model=model, **sections)


def dump_config(config, path=None):
    """Writes the resolved config as YAML (to ``path`` if given, atomically); returns the text.

    ``load_config(path)`` reads it back into an equal config.
    """
    import yaml

    text = yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=False)
    if path:
        from common.atomic_files import write_text

        write_text(path, text)  # complete or absent: never a half-written recipe
    return text


def build_network(config):
    """Builds the pure network (detector or classifier) of an ExperimentConfig."""
    family = family_of(config.model.name)
    return family.build_network(config.model, sync_bn=config.runtime.sync_bn)
