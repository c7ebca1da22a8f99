"""Sections shared by every experiment: data, train, eval, runtime.

Model sections are family-specific (``efficientdet.config``,
``efficientnet_v2.config``). Defaults are the EfficientDet COCO recipe's where a
field is shared; family presets override them.
"""
from __future__ import annotations

import dataclasses
import re

from common.config.errors import ConfigError

_OPTIMIZERS = ("sgd", "rmsprop", "adamw", "adam")
_LR_SCHEDULES = ("cosine", "stepwise", "polynomial", "exponential", "constant")
STRATEGIES = ("auto", "default", "horovod", "mirrored", "multi_worker")
# Keras dtype policies a run may use: float32, or float16 / bfloat16 compute with
# float32 variables (float16 with dynamic loss scaling; bfloat16 needs none).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# train.gradient_checkpointing → the layer groups recomputed in the backward pass
# (layers declare their group: common.layers.recompute.checkpoint_groups).
GRADIENT_CHECKPOINTING = {"none": (), "backbone": ("backbone",), "bifpn": ("bifpn",),
                          "all": ("backbone", "bifpn", "head")}
FREEZE_PRESETS = ("backbone", "backbone+bifpn")
FREEZE_REGEX_PREFIX = "re:"


def _check(condition, message):
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Input files and pipeline options.

    tf.data performance options: ``num_parallel_calls`` is the parallelism of
    the per-image map (-1 = ``tf.data.AUTOTUNE``, tuned at run time);
    ``private_threadpool_size`` > 0 gives the pipeline its own thread pool
    (0 = TensorFlow's shared pool), e.g. to keep a busy train step from
    starving the input threads.
    """

    train_file_pattern: str | None = None
    val_file_pattern: str | None = None
    val_json_file: str | None = None
    max_instances_per_image: int = 100
    shuffle_buffer: int = 1024
    input_rand_hflip: bool = True
    jitter_min: float = 0.1
    jitter_max: float = 2.0
    skip_crowd_during_training: bool = True
    cache: bool = False
    num_parallel_calls: int = -1
    private_threadpool_size: int = 0
    # Class names ("coco" or a .json / .yaml / .txt label map). None: found next to
    # the records or in val_json_file (common.export.label_map.run_label_map).
    label_map: str | None = None

    def validate(self):
        _check(self.max_instances_per_image > 0, "data.max_instances_per_image must be > 0.")
        _check(0 < self.jitter_min <= self.jitter_max,
               f"data.jitter_min/jitter_max must satisfy 0 < min <= max, got "
               f"{self.jitter_min}, {self.jitter_max}.")
        _check(self.num_parallel_calls == -1 or self.num_parallel_calls >= 1,
               f"data.num_parallel_calls must be -1 (autotune) or >= 1, got "
               f"{self.num_parallel_calls}.")
        _check(self.private_threadpool_size >= 0,
               f"data.private_threadpool_size must be >= 0 (0 = shared pool), got "
               f"{self.private_threadpool_size}.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimization. ``learning_rate`` is for a global batch of ``lr_reference_batch``
    images and is scaled linearly with the real global batch size."""

    batch_size: int = 8
    num_epochs: int = 300
    steps_per_epoch: int | None = None
    optimizer: str = "sgd"
    learning_rate: float = 0.08
    lr_reference_batch: int = 64
    momentum: float = 0.9
    weight_decay: float = 4e-5
    weight_decay_exclude: str = r".*(bias|gamma|beta|WSM).*"
    lr_decay_method: str = "cosine"
    lr_warmup_epoch: float = 1.0
    lr_warmup_init: float = 0.008
    lr_decay_epochs: float = 2.4
    lr_decay_factor: float = 0.97
    clip_gradients_norm: float = 10.0
    moving_average_decay: float = 0.9998
    grad_accum_steps: int = 1
    label_smoothing: float = 0.0
    seed: int | None = None
    # Divergence watch (common.training.divergence): a finite loss above
    # divergence_factor x its running baseline for divergence_patience steps in a
    # row stops the run (0 turns the explosion check off; NaN/Inf always stop it).
    divergence_factor: float = 10.0
    divergence_patience: int = 5
    # Fine-tuning: "backbone", "backbone+bifpn" or "re:<regex over variable paths>"
    # (see common.training.freeze); null / "none" trains everything.
    freeze: str | None = None
    # Recompute activations in the backward pass to save memory (see README
    # "Memory"): "none", "backbone" (each block), "bifpn" (each BiFPN cell),
    # "all" (blocks, cells and the prediction heads).
    gradient_checkpointing: str = "none"

    def validate(self):
        _check(self.batch_size > 0, f"train.batch_size must be > 0, got {self.batch_size}.")
        _check(self.num_epochs > 0, f"train.num_epochs must be > 0, got {self.num_epochs}.")
        _check(self.optimizer in _OPTIMIZERS,
               f"train.optimizer {self.optimizer!r} is not one of {_OPTIMIZERS}.")
        _check(self.lr_decay_method in _LR_SCHEDULES,
               f"train.lr_decay_method {self.lr_decay_method!r} is not one of {_LR_SCHEDULES}.")
        _check(self.learning_rate > 0, "train.learning_rate must be > 0.")
        _check(self.grad_accum_steps >= 1, "train.grad_accum_steps must be >= 1.")
        _check(0.0 <= self.moving_average_decay < 1.0,
               "train.moving_average_decay must be in [0, 1) (0 disables EMA).")
        _check(0.0 <= self.label_smoothing < 1.0, "train.label_smoothing must be in [0, 1).")
        _check(self.divergence_factor == 0 or self.divergence_factor > 1,
               f"train.divergence_factor must be 0 (off) or > 1, got {self.divergence_factor}.")
        _check(self.divergence_patience >= 1,
               f"train.divergence_patience must be >= 1, got {self.divergence_patience}.")
        parse_freeze(self.freeze)
        _check(self.gradient_checkpointing in GRADIENT_CHECKPOINTING,
               f"train.gradient_checkpointing {self.gradient_checkpointing!r} is not one of "
               f"{tuple(GRADIENT_CHECKPOINTING)}.")


def parse_freeze(spec):
    """Reads a ``train.freeze`` value.

    Returns:
        None (nothing frozen: None, "" or "none"), a preset name from
        :data:`FREEZE_PRESETS`, or the compiled pattern of ``re:<regex>``.

    Raises:
        ConfigError: an unknown preset, an empty or invalid regular expression.
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    if spec.startswith(FREEZE_REGEX_PREFIX):
        pattern = spec[len(FREEZE_REGEX_PREFIX):]
        _check(pattern.strip() != "", "train.freeze 're:' needs a regular expression after "
               "'re:', e.g. 're:efficientnet-b0/blocks_[0-3]/'.")
        try:
            return re.compile(pattern)
        except re.error as error:
            raise ConfigError(f"train.freeze {spec!r}: invalid regular expression ({error}); "
                              "fix the pattern after 're:'.") from None
    _check(spec in FREEZE_PRESETS,
           f"train.freeze {spec!r} is not one of {FREEZE_PRESETS}, 'none' or 're:<regex>' "
           "(a regular expression matched from the start of variable paths).")
    return spec


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation options."""

    batch_size: int = 8
    eval_samples: int | None = None
    every_n_epochs: int = 1
    use_ema: bool = True
    # A stand-alone evaluation (--mode eval) folds every batch norm into its conv
    # (same metrics within float rounding, faster); evaluation during training
    # shares the training network and never folds.
    fold_batch_norm: bool = True
    # Detection: every evaluation writes its first num_pictures validation images,
    # ground truth beside detections, to model_dir/eval_pictures/ and TensorBoard
    # (0: none).
    num_pictures: int = 8

    def validate(self):
        _check(self.batch_size > 0, "eval.batch_size must be > 0.")
        _check(self.num_pictures >= 0, "eval.num_pictures must be >= 0 (0 writes no pictures).")


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the job runs."""

    model_dir: str | None = None
    use_xla: bool = False
    # The float16 shortcut (``--amp``): the same as precision=mixed_float16.
    mixed_precision: bool = False
    precision: str = "float32"
    strategy: str = "auto"
    sync_bn: bool = False
    log_every_n_steps: int = 10
    keep_checkpoint_max: int = 5
    # Checkpoints are written at the end of every epoch, and also every this many
    # steps inside epochs when > 0 (a resume then continues mid-epoch).
    checkpoint_every_n_steps: int = 0
    # Bit-identical runs for one seed on CPU (slower; see README "Resuming and failures").
    deterministic: bool = False

    @property
    def policy(self) -> str:
        """The Keras dtype policy of the run (one of :data:`PRECISIONS`)."""
        return "mixed_float16" if self.mixed_precision else self.precision

    @property
    def loss_scaling(self) -> bool:
        """Dynamic loss scaling is on (float16 only: bfloat16 has float32's range)."""
        return self.policy == "mixed_float16"

    def validate(self):
        _check(self.precision in PRECISIONS,
               f"runtime.precision {self.precision!r} is not one of {PRECISIONS}.")
        _check(not self.mixed_precision or self.precision in ("float32", "mixed_float16"),
               f"runtime.mixed_precision (--amp) means mixed_float16 but runtime.precision is "
               f"{self.precision!r}: set only runtime.precision (--precision).")
        _check(self.strategy in STRATEGIES,
               f"runtime.strategy {self.strategy!r} is not one of {STRATEGIES}.")
        _check(self.checkpoint_every_n_steps >= 0,
               f"runtime.checkpoint_every_n_steps must be >= 0 (0 = epoch ends only), got "
               f"{self.checkpoint_every_n_steps}.")
