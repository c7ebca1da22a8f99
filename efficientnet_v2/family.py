"""The EfficientNet / EfficientNetV2 classifier family object (registered in ``model_zoo``)."""
import re

from common.config.errors import ConfigError
from common.families import ModelFamily
import efficientnet_v2.config as classifier_config


def _inference_wrapper():
    from efficientnet_v2.inference import ClassifierInference

    return ClassifierInference


def _portable_wrapper():
    from efficientnet_v2.portable_inference import PortableClassifierInference

    return PortableClassifierInference


def _no_bifpn(model):
    raise ConfigError(
        f"train.freeze 'backbone+bifpn' needs a detector; {model.name} is a classifier "
        "without BiFPN: use train.freeze=backbone (all but the classification layer).")


EFFICIENTNET = ModelFamily.from_config_module(
    "efficientnet", classifier_config,
    inference_wrapper=_inference_wrapper,
    portable_wrapper=_portable_wrapper,
    freeze_presets={
        # Everything but the final classification layer: a linear probe.
        "backbone": lambda model: r"(?!%s/head/dense/)" % re.escape(model.name),
        "backbone+bifpn": _no_bifpn,
    },
    primary_metric="top1",
)
