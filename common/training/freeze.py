"""Freezing part of a network for fine-tuning (``train.freeze`` / ``main.py --freeze``).

``train.freeze`` is one of:

* a preset of the model's family (:attr:`common.families.ModelFamily.freeze_presets`):
  ``backbone`` — detectors: the EfficientNet backbone (``efficientnet-b0/...``);
  classifiers: everything except the final classification layer
  (``<model>/head/dense``), i.e. the network becomes a linear probe;
  ``backbone+bifpn`` — detectors only: backbone, P6/P7 resampling and BiFPN, so
  only the class and box heads train;
* ``re:<regex>`` — every variable whose path (e.g.
  ``efficientnet-b0/blocks_3/conv2d/kernel``) matches the regular expression
  from its start (``re.match``, as ``train.weight_decay_exclude``).

Frozen variables get ``trainable = False`` before the optimizer is built, so the
optimizer, the L2 term and the gradients never see them. A batch-norm layer
with no trainable weight left (its ``gamma`` and ``beta`` frozen) is frozen as a
layer, which in Keras 3 makes it run in inference mode: its moving statistics
stay those of the checkpoint (the usual fine-tuning choice; batch statistics
from small fine-tuning batches would wash them out).
"""
import dataclasses
import re

import keras

from common.config.errors import ConfigError
from common.config.schema import parse_freeze


@dataclasses.dataclass
class FreezeResult:
    """What :func:`freeze_variables` froze.

    Attributes:
        spec: the ``train.freeze`` value.
        frozen: paths of the variables that were trainable and now are not.
        trainable_before: number of trainable variables before freezing.
        inference_bn_layers: batch-norm layers now running in inference mode.
    """

    spec: str | None
    frozen: list = dataclasses.field(default_factory=list)
    trainable_before: int = 0
    inference_bn_layers: int = 0

    def summary(self):
        """One log-line fragment."""
        if not self.spec:
            return "nothing frozen"
        return (f"froze {len(self.frozen)} of {self.trainable_before} trainable variables "
                f"(train.freeze={self.spec!r}); {self.inference_bn_layers} frozen batch-norm "
                "layers run in inference mode")


def freeze_pattern(spec, family, model_config):
    """The regular expression (over variable paths) that ``train.freeze`` = ``spec`` means.

    Args:
        spec: a preset of ``family`` (e.g. ``backbone``) or ``re:<regex>``
            (None / "none": nothing).
        family: the model's :class:`common.families.ModelFamily` (owns the presets).
        model_config: the model section of the config.

    Returns:
        A compiled pattern, or None when nothing is frozen.

    Raises:
        ConfigError: a preset that does not apply to this family or an invalid regex.
    """
    parsed = parse_freeze(spec)
    if parsed is None or isinstance(parsed, re.Pattern):
        return parsed
    return family.freeze_pattern(parsed, model_config)


def freeze_variables(model, pattern, spec=None):
    """Sets ``trainable = False`` on the trainable variables of ``model`` matching ``pattern``.

    Call it before the optimizer is built. Batch-norm layers left with no
    trainable weight are frozen as layers (inference mode).

    Args:
        model: a built Keras network.
        pattern: compiled regex over variable paths, or None (nothing frozen).
        spec: the ``train.freeze`` text, for messages.

    Returns:
        A :class:`FreezeResult`.

    Raises:
        ConfigError: if ``pattern`` matches no trainable variable (a typo
            would otherwise silently train everything).
    """
    trainable = list(model.trainable_variables)
    result = FreezeResult(spec=spec, trainable_before=len(trainable))
    if pattern is None:
        return result
    matched = [v for v in trainable if pattern.match(v.path)]
    if not matched:
        raise ConfigError(
            f"train.freeze {spec!r} matches none of the {len(trainable)} trainable variables of "
            f"{model.name} (paths look like {trainable[0].path!r}); fix the pattern.")
    for variable in matched:
        variable.trainable = False
    result.frozen = [v.path for v in matched]
    frozen_ids = {id(v) for v in matched}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if (isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
                and not layer.trainable_weights
                and any(id(v) in frozen_ids for v in layer.weights)):
            layer.trainable = False
            result.inference_bn_layers += 1
    return result


def apply_freeze(model, config):
    """Freezes what ``config.train.freeze`` names in ``model`` (an ExperimentConfig's network)."""
    spec = config.train.freeze
    pattern = freeze_pattern(spec, config.family, config.model)
    return freeze_variables(model, pattern, spec)
