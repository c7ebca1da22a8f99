"""Model families as objects: the contract between ``common`` and a model package.

A model family (EfficientDet detectors, EfficientNet classifiers, …) is one
package that exposes one :class:`ModelFamily` object. ``common`` never imports
a model package: the registry :data:`FAMILIES` is filled by the top-level
module ``model_zoo`` (one line per family), and everything in ``common`` asks
the family object — its names and presets, config class, network builder,
experiment, inference wrapper, freeze presets, primary metric and export
capabilities — instead of branching on a task string.

Adding a family: a new package with a ``family.py`` defining its
``ModelFamily`` (and an experiment / task satisfying :class:`Experiment` /
:class:`Task`), plus one line in ``model_zoo.py``.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable, Mapping, Optional, Protocol, Sequence

from common.config.errors import ConfigError


class Task(Protocol):
    """The loss side of a family: raw network outputs + labels → float32 losses."""

    def compute_loss(self, outputs, labels) -> dict:
        """Returns a dict holding the float32 scalar ``total_loss`` (mean over the batch)
        and other float32 scalars to log."""


class RecordChecks(Protocol):
    """Pre-flight and mid-run checks of a family's record files."""

    def check(self, files: Sequence[str]):
        """Raises a one-line error when ``files`` are not readable records of this family."""

    def explain(self, error, files: Sequence[str]):
        """A one-line user error for a data error raised while reading ``files``, or None."""


class Experiment(Protocol):
    """What the training runtime needs from a family for one resolved config."""

    task: Task
    records: RecordChecks

    def stages(self, model, num_epochs: int, batch_size: int, seed=None, *,
               batches_per_epoch: int) -> list:
        """The :class:`common.training.loop.TrainingStage` list of a run."""

    def eval_dataset(self, batch_size: int):
        """The evaluation ``tf.data.Dataset`` of this process's shard."""

    def evaluate(self, model, dataset, max_steps=None, results_json=None, preview=None) -> dict:
        """Metrics of ``model`` on ``dataset`` (the family's ``primary_metric`` among them)."""


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """One model family.

    Attributes:
        name: the family's name (e.g. ``efficientdet``).
        task: ``"detection"`` or ``"classification"``: what its outputs are
            (also recorded in exported files).
        config_class: the frozen dataclass of the ``model`` config section.
        model_names: ``() -> list[str]`` of every model name it builds.
        presets: ``model_name -> dict``: nested config overrides for that model.
        build_network: ``(model_config, sync_bn=False) -> keras.Model`` (the pure network).
        make_experiment: ``(config, distribution) -> Experiment``.
        inference_wrapper: ``() -> type``: the
            :class:`common.export.module.InferenceModule` subclass (imported lazily).
        portable_wrapper: ``() -> type``: its twin on other Keras backends, a
            :class:`common.export.portable.PortableInference` subclass (NumPy pre-
            and post-processing; imported lazily). None: TensorFlow only.
        freeze_presets: ``train.freeze`` preset → ``model_config -> regex`` over
            variable paths (the variables the preset freezes).
        primary_metric: the evaluation metric that picks the best checkpoint.
        results_file: name of the per-example results an evaluation writes into
            the model directory (None: none).
        outputs_boxes: its outputs are boxes (drawn by ``infer``, NMS in exports).
    """

    name: str
    task: str
    config_class: type
    model_names: Callable[[], Sequence[str]]
    presets: Callable[[str], dict]
    build_network: Callable
    make_experiment: Callable
    inference_wrapper: Callable[[], type]
    portable_wrapper: Optional[Callable[[], type]] = None
    freeze_presets: Mapping[str, Callable] = dataclasses.field(default_factory=dict)
    primary_metric: str = ""
    results_file: Optional[str] = None
    outputs_boxes: bool = False

    @classmethod
    def from_config_module(cls, name: str, module, **details) -> "ModelFamily":
        """The family whose config module ``module`` defines ``TASK``,
        ``MODEL_CONFIG_CLASS``, ``list_model_names``, ``presets``,
        ``build_network`` and ``make_experiment``; ``details`` are the other
        attributes (``inference_wrapper``, ``freeze_presets``, ...)."""
        return cls(name=name, task=module.TASK, config_class=module.MODEL_CONFIG_CLASS,
                   model_names=module.list_model_names, presets=module.presets,
                   build_network=module.build_network,
                   make_experiment=module.make_experiment, **details)

    def owns(self, model_name: str) -> bool:
        return model_name in self.model_names()

    def freeze_pattern(self, preset: str, model_config) -> re.Pattern:
        """The compiled pattern of freeze ``preset`` for ``model_config``.

        Raises:
            ConfigError: ``preset`` is not one of this family's presets.
        """
        if preset not in self.freeze_presets:
            raise ConfigError(
                f"train.freeze {preset!r} is not a preset for {model_config.name} "
                f"({self.name}); use one of {sorted(self.freeze_presets)} or 're:<regex>'.")
        return re.compile(self.freeze_presets[preset](model_config))


class FamilyRegistry:
    """The registered model families, looked up by model name."""

    def __init__(self):
        self._families: list[ModelFamily] = []

    def register(self, *families: ModelFamily):
        """Adds ``families`` (registering the same object twice is a no-op)."""
        for family in families:
            if any(f is family for f in self._families):
                continue
            if any(f.name == family.name for f in self._families):
                raise ValueError(f"A model family named {family.name!r} is already registered.")
            self._families.append(family)

    def __iter__(self) -> Iterable[ModelFamily]:
        return iter(list(self._families))

    def model_names(self) -> list:
        return sorted(n for f in self._families for n in f.model_names())

    def for_model(self, model_name: str) -> ModelFamily:
        """The family that builds ``model_name``.

        Raises:
            ConfigError: no family knows the name (with the closest valid names).
        """
        from common.config.loader import _suggest

        if not self._families:
            raise ConfigError("No model family is registered: import model_zoo (main.py, "
                              "model_inspect.py and the tests do) before resolving a config.")
        for family in self._families:
            if family.owns(model_name):
                return family
        raise ConfigError(f"Unknown model name {model_name!r}: "
                          f"{_suggest(model_name, self.model_names())}")


FAMILIES = FamilyRegistry()
