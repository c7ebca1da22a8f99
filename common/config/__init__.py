"""Configuration: YAML recipes in ``configs/`` → frozen dataclasses.

Precedence: dataclass defaults < model-name presets < YAML file < command-line
overrides (``--hparams a.b=1,c=2`` / repeated ``--override a.b=1``).
"""
from common.config.errors import ConfigError
from common.config.experiment import (
    build_network,
    dump_config,
    family_of,
    load_config,
    load_config_file,
)
from common.config.loader import from_dict, parse_overrides, to_dict
from common.config.schema import DataConfig, EvalConfig, RuntimeConfig, TrainConfig

__all__ = [
    "build_network",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "RuntimeConfig",
    "TrainConfig",
    "dump_config",
    "family_of",
    "from_dict",
    "load_config",
    "load_config_file",
    "parse_overrides",
    "to_dict",
]
