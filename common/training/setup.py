"""Builds the objects one training run trains with, from an ExperimentConfig.

:func:`build_training_setup` is the one place the model, freezing, learning-rate
schedule, optimizer, EMA, train step and checkpoint state are put together;
:func:`common.training.runner.train` and the train benchmark
(:mod:`benchmarks.cases`) both use it, so what is timed is what trains.
"""
import dataclasses
import os

import tensorflow as tf
from absl import logging

from common.checkpoints import CheckpointError, restore_with_report
from common.config import ConfigError, build_network, dump_config
from common.config.schema import GRADIENT_CHECKPOINTING
from common.layers.recompute import checkpoint_groups, checkpoint_groups_present
from common.training.checkpoints import CheckpointState
from common.training.divergence import DivergenceWatch
from common.training.ema import ExponentialMovingAverage
from common.training.freeze import apply_freeze
from common.training.optimizers import build_optimizer, decayed_variables
from common.training.preflight import count_records
from common.training.schedules import build_schedule
from common.training.train_step import TrainStep
from common.training.user_errors import user_errors


@dataclasses.dataclass
class TrainingSetup:
    """What :func:`build_training_setup` built.

    Attributes:
        model: the network (weights loaded, frozen variables set).
        frozen: the freeze report of :func:`common.training.freeze.apply_freeze`.
        optimizer: the Keras optimizer (a ``LossScaleOptimizer`` under mixed precision).
        schedule: the learning-rate schedule driving ``optimizer`` (``step -> lr``).
        ema: the :class:`~common.training.ema.ExponentialMovingAverage`, or None.
        step: the :class:`~common.training.train_step.TrainStep`.
        state: the :class:`~common.training.checkpoints.CheckpointState`, or None
            when the config has no ``runtime.model_dir``.
        steps_per_epoch: optimizer steps per epoch.
        global_batch: images per optimizer step over all replicas and micro-batches.
        batches_per_step: micro-batches one input pipeline yields per optimizer step.
    """

    model: object
    frozen: object
    optimizer: object
    schedule: object
    ema: object
    step: TrainStep
    state: CheckpointState | None
    steps_per_epoch: int
    global_batch: int
    batches_per_step: int


def build_training_setup(config, distribution, task, init_checkpoint=None, resume_from=None,
                         train_files=(), records=None):
    """Builds model, optimizer, EMA, train step and checkpoint state under ``distribution``.

    Call after the precision policy and the seeds are set: the model's variables
    are created here. Options such as mixed precision and XLA come from
    ``config.runtime``; pass an adjusted config (``dataclasses.replace``) to
    change them.

    Args:
        config: the ExperimentConfig.
        distribution: the distribution hook; every variable is created in its scope.
        task: the experiment's task (``compute_loss``) the train step optimizes.
        init_checkpoint: weights to start from (layers with other shapes are
            re-initialized); ignored when ``resume_from`` is given.
        resume_from: a checkpoint prefix of ``CheckpointState`` to continue
            (``--resume``); the chief then records ``config`` in the model directory.
        train_files: the training records, counted when ``train.steps_per_epoch``
            is unset.
        records: the experiment's record checks (names a damaged file while counting).

    Returns:
        A :class:`TrainingSetup`.

    Raises:
        ConfigError: fewer examples than one global batch; unreadable data.
        CheckpointError: unusable ``init_checkpoint`` or resume state.
    """
    runtime, train_cfg = config.runtime, config.train
    # Variables of the model, optimizer, EMA and step are created on every replica.
    with distribution.scope():
        model = build_network(config)
        # Weights first, then freezing: both before the optimizer, L2 term and EMA
        # are built, so those only ever see the trainable variables / loaded values.
        restored = None
        if init_checkpoint and resume_from is None:
            restored = restore_with_report(model, init_checkpoint, use_ema=True,
                                           skip_mismatch=True)
        frozen = apply_freeze(model, config)
        _apply_gradient_checkpointing(model, config)
        if restored is not None or train_cfg.freeze:
            _log_fine_tuning_start(model, init_checkpoint, restored, frozen)

        global_batch = train_cfg.batch_size * distribution.size * train_cfg.grad_accum_steps
        steps_per_epoch = _steps_per_epoch(config, distribution, global_batch, train_files,
                                           records)
        # Micro-batches one input pipeline yields per optimizer step (tf.distribute
        # feeds all of a worker's replicas from its one pipeline).
        batches_per_step = train_cfg.grad_accum_steps * (distribution.size
                                                         // distribution.num_shards)
        schedule = build_schedule(train_cfg, steps_per_epoch, global_batch)
        optimizer, ema = build_optimizer_and_ema(config, model, schedule)
        step = TrainStep(model, task, optimizer, ema=ema, distribution=distribution,
                         grad_accum_steps=train_cfg.grad_accum_steps, use_xla=runtime.use_xla,
                         weight_decay=train_cfg.weight_decay,
                         weight_decay_exclude=train_cfg.weight_decay_exclude,
                         divergence=DivergenceWatch(train_cfg.divergence_factor,
                                                    train_cfg.divergence_patience))
        state = None
        if runtime.model_dir:
            state = CheckpointState(runtime.model_dir, model, optimizer, ema,
                                    max_to_keep=runtime.keep_checkpoint_max,
                                    is_chief=distribution.is_chief, step=step.global_step)
        if resume_from is not None:
            _restore_for_resume(state, resume_from, config)
        distribution.broadcast_variables(list(model.weights) + list(optimizer.variables)
                                         + (list(ema.shadows) if ema else []))
    return TrainingSetup(model=model, frozen=frozen, optimizer=optimizer, schedule=schedule,
                         ema=ema, step=step, state=state, steps_per_epoch=steps_per_epoch,
                         global_batch=global_batch, batches_per_step=batches_per_step)


def build_optimizer_and_ema(config, network, schedule):
    """The optimizer (with ``config``'s decay, clipping, loss scaling) and EMA of ``network``.

    Build after freezing: weight-decay exclusion and the EMA see the trainable
    variables / loaded values of that moment.

    Returns:
        ``(optimizer, ema)``; ``ema`` is None when ``train.moving_average_decay`` is 0.
    """
    train_cfg = config.train
    _, no_decay = decayed_variables(network.trainable_variables, train_cfg.weight_decay_exclude)
    optimizer = build_optimizer(
        train_cfg.optimizer, schedule, momentum=train_cfg.momentum,
        weight_decay=train_cfg.weight_decay, clip_norm=train_cfg.clip_gradients_norm,
        mixed_precision=config.runtime.loss_scaling, no_decay_variables=no_decay)
    ema = None
    if train_cfg.moving_average_decay > 0:
        ema = ExponentialMovingAverage(network.weights, train_cfg.moving_average_decay)
    return optimizer, ema


def _steps_per_epoch(config, distribution, global_batch, train_files, records=None):
    train_cfg = config.train
    if train_cfg.steps_per_epoch:
        return train_cfg.steps_per_epoch
    with user_errors(config, train_files, records):
        num_examples = count_records(train_files)
    steps_per_epoch = num_examples // global_batch
    if steps_per_epoch == 0:
        raise ConfigError(
            f"The training data has {num_examples} examples, fewer than one global batch "
            f"({global_batch} = batch {train_cfg.batch_size} x {distribution.size} "
            f"replicas x {train_cfg.grad_accum_steps} accumulation steps); "
            "lower train.batch_size.")
    return steps_per_epoch


def _restore_for_resume(state, latest, config):
    """Restores ``latest``; then (chief) records the possibly changed recipe atomically."""
    try:
        state.restore_latest()
    except (ValueError, AssertionError, tf.errors.OpError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"Cannot resume from {latest}: it does not match the model of this run ({detail}). "
            f"Check that {config.runtime.model_dir}/config.yaml is the recipe these checkpoints "
            "were trained with; nothing was changed.") from None
    if state.is_chief:
        path = os.path.join(config.runtime.model_dir, "config.yaml")
        text = dump_config(config)
        current = open(path).read() if os.path.isfile(path) else None
        if text != current:
            dump_config(config, path)


def _apply_gradient_checkpointing(model, config):
    """Makes the layers ``train.gradient_checkpointing`` names recompute their
    activations in the backward pass (same values, less memory, more time)."""
    mode = config.train.gradient_checkpointing
    groups = GRADIENT_CHECKPOINTING[mode]
    if not groups:
        return
    count = checkpoint_groups(model, groups)
    if not count:
        usable = [name for name, wanted in GRADIENT_CHECKPOINTING.items()
                  if wanted and checkpoint_groups_present(model, wanted)]
        raise ConfigError(f"train.gradient_checkpointing={mode}: {config.model.name} has no "
                          f"such layers; use one of {['none'] + usable}.")
    logging.info("Gradient checkpointing (%s): %d layers recompute their activations in the "
                 "backward pass.", mode, count)


def _log_fine_tuning_start(model, init_checkpoint, restored, frozen):
    """One line: loaded / skipped / frozen counts (and batch-norm layers in inference mode)."""
    if restored is None:
        loaded = "no --init_checkpoint"
    else:
        loaded = (f"loaded {restored.loaded}, skipped {len(restored.skipped)} (other shapes), "
                  f"missing {len(restored.missing)} of {len(model.weights)} variables from "
                  f"{init_checkpoint}")
    logging.info("Fine-tuning start: %s; %s.", loaded, frozen.summary())
