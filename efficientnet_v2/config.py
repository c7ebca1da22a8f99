"""Model config of the classification family (EfficientNetV2 S/M/L/B0–B3 and
EfficientNet V1 B0–B7 as classifiers) and its per-model presets.

Presets follow the official EfficientNetV2 ImageNet recipe (Tan & Le 2021,
§5.1 / Table 7): RMSProp, lr 0.016 per 256 images with 5 warm-up epochs and
0.97 decay every 2.4 epochs, weight decay 1e-5, EMA 0.9999, label smoothing 0.1.
"""
from __future__ import annotations

import dataclasses

from common.backbones import get_efficientnet_spec, list_efficientnet_names
from common.config.errors import ConfigError

TASK = "classification"
_PREPROCESSING = ("scale_128", "imagenet_mean_std", "scale_127")


@dataclasses.dataclass(frozen=True)
class ProgressiveConfig:
    """Stage-wise progressive learning (see :mod:`efficientnet_v2.progressive`).

    Final values: ``model.train_image_size``, ``model.dropout_rate`` and the
    ``randaug_magnitude`` / ``mixup_alpha`` / ``cutmix_alpha`` below; the ``base_``
    values are the first stage's. ``n_stages: 1`` trains at the final values.
    """

    n_stages: int = 4
    base_image_size: tuple[int, int] = (128, 128)
    randaug_magnitude: float = 10.0
    base_randaug_magnitude: float = 5.0
    mixup_alpha: float = 0.0
    base_mixup: float = 0.0
    cutmix_alpha: float = 0.0
    base_cutmix: float = 0.0
    base_dropout: float = 0.1

    def validate(self):
        if self.n_stages < 1:
            raise ConfigError(f"model.progressive.n_stages must be >= 1, got {self.n_stages}.")


@dataclasses.dataclass(frozen=True)
class ClassificationModelConfig:
    """A classifier. ``image_size`` is the (height, width) used for evaluation and
    export; ``train_image_size`` the final training size (progressive resizing
    grows towards it)."""

    name: str = "efficientnetv2-s"
    num_classes: int = 1000
    image_size: tuple[int, int] = (384, 384)
    train_image_size: tuple[int, int] = (300, 300)
    dropout_rate: float = 0.2
    drop_path_rate: float = 0.2
    activation: str = "swish"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-3
    preprocessing: str = "scale_128"
    progressive: ProgressiveConfig = ProgressiveConfig()

    def validate(self):
        if self.num_classes < 1:
            raise ConfigError(f"model.num_classes must be >= 1, got {self.num_classes}.")
        for key in ("image_size", "train_image_size"):
            size = getattr(self, key)
            if min(size) < 32:
                raise ConfigError(f"model.{key} must be at least 32x32, got {size}.")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ConfigError(f"model.dropout_rate must be in [0, 1), got {self.dropout_rate}.")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"model.drop_path_rate must be in [0, 1), got {self.drop_path_rate}.")
        if self.preprocessing not in _PREPROCESSING:
            raise ConfigError(
                f"model.preprocessing {self.preprocessing!r} is not one of {_PREPROCESSING}."
            )


MODEL_CONFIG_CLASS = ClassificationModelConfig


def list_model_names():
    """Every classifier name: ``efficientnetv2-*``, ``efficientnet-b*`` and ``efficientnet-lite*``."""
    return list_efficientnet_names()


def presets(model_name):
    """Nested config overrides for ``model_name`` (sizes, dropout, BN, recipe)."""
    spec = get_efficientnet_spec(model_name)
    is_v2 = model_name.startswith("efficientnetv2-")
    return {
        "model": {
            "image_size": [spec.eval_size, spec.eval_size],
            "train_image_size": [spec.train_size, spec.train_size],
            "dropout_rate": spec.dropout_rate,
            "activation": spec.activation,
            "bn_momentum": spec.bn_momentum,
            "bn_epsilon": spec.bn_epsilon,
            "preprocessing": spec.preprocessing,
            "progressive": {
                "n_stages": 4 if is_v2 else 1,
                "randaug_magnitude": float(spec.randaug_magnitude or 0),
                "base_randaug_magnitude": 5.0 if is_v2 else float(spec.randaug_magnitude or 0),
                "mixup_alpha": spec.mixup_alpha,
                "base_dropout": 0.1 if is_v2 else spec.dropout_rate,
            },
        },
        "train": {
            "batch_size": 32,
            "num_epochs": 350,
            "optimizer": "rmsprop",
            "learning_rate": 0.016,
            "lr_reference_batch": 256,
            "momentum": 0.9,
            "weight_decay": 1e-5,
            "weight_decay_exclude": r".*(bias|gamma|beta).*",
            "lr_decay_method": "exponential",
            "lr_warmup_epoch": 5.0,
            "lr_warmup_init": 0.0,
            "lr_decay_epochs": 2.4,
            "lr_decay_factor": 0.97,
            "clip_gradients_norm": 0.0,
            "moving_average_decay": 0.9999,
            "label_smoothing": 0.1,
        },
        "eval": {"batch_size": 32},
    }


def build_network(model_config, sync_bn=False):
    """The pure classifier network of ``model_config``."""
    from efficientnet_v2.network import build_classifier_from_config

    return build_classifier_from_config(model_config, sync_bn=sync_bn)


def make_experiment(config, distribution):
    """The classification experiment (data, stages, task, evaluation) of ``config``."""
    from efficientnet_v2.experiment import ClassificationExperiment

    return ClassificationExperiment(config, distribution)
