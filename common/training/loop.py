"""The epoch loop around the one train step: stages, logging, checkpoints, evaluation.

The loop never reads tensors on every step: losses are fetched only at log
points, so the device runs ahead of the host between them.
"""
import dataclasses
import time
from typing import Callable, Optional

import numpy as np
from absl import logging

# Under mixed precision a non-finite loss skips the step and lowers the loss
# scale; only this many in a row (the scale would be ~1 by then) is divergence.
_AMP_NONFINITE_LIMIT = 30


class TrainingDivergedError(RuntimeError):
    """The loss became NaN/Inf; the message names the step and the last good checkpoint."""


@dataclasses.dataclass
class TrainingStage:
    """Epochs ``[start_epoch, end_epoch)`` trained on one input pipeline.

    Attributes:
        make_dataset: returns the (repeating) training ``tf.data.Dataset``.
        on_enter: optional hook run before the stage (e.g. set the dropout rate).
        description: shown in the logs.
    """

    index: int
    start_epoch: int
    end_epoch: int
    make_dataset: Callable
    on_enter: Optional[Callable] = None
    description: str = ""


class TrainingLoop:
    """Runs stages of epochs with one :class:`~common.training.train_step.TrainStep`.

    Args:
        train_step: the compiled step.
        state: the :class:`~common.training.checkpoints.CheckpointState`.
        logger: the :class:`~common.training.logger.MetricLogger`.
        steps_per_epoch: optimizer steps per epoch.
        global_batch_size: images per optimizer step over all replicas and micro-batches.
        learning_rate_fn: ``step -> lr`` for logging (the optimizer's schedule).
        log_every_n_steps: host sync / log interval.
        save_every_n_epochs: checkpoint interval (the last epoch is always saved).
        evaluate_fn: optional ``epoch -> metrics dict`` run every ``eval_every_n_epochs``.
        primary_metric: key of ``evaluate_fn``'s result used to keep the best checkpoint.
        amp: mixed precision is on (non-finite losses are tolerated for a while).
    """

    def __init__(self, train_step, state, logger, steps_per_epoch, global_batch_size,
                 learning_rate_fn=None, log_every_n_steps=10, save_every_n_epochs=1,
                 evaluate_fn=None, eval_every_n_epochs=1, primary_metric=None, amp=False):
        self.train_step = train_step
        self.state = state
        self.logger = logger
        self.steps_per_epoch = int(steps_per_epoch)
        self.global_batch_size = int(global_batch_size)
        self.learning_rate_fn = learning_rate_fn
        self.log_every_n_steps = max(1, int(log_every_n_steps))
        self.save_every_n_epochs = max(1, int(save_every_n_epochs))
        self.evaluate_fn = evaluate_fn
        self.eval_every_n_epochs = max(1, int(eval_every_n_epochs))
        self.primary_metric = primary_metric
        self.amp = amp
        self.last_eval = None
        self.history = []

    def _check_finite(self):
        streak = int(self.train_step.nonfinite_streak.numpy())
        limit = _AMP_NONFINITE_LIMIT if self.amp else 1
        if streak >= limit:
            raise TrainingDivergedError(
                f"Loss is NaN/Inf at step {self.state.step} ({streak} step(s) in a row). "
                f"Last good checkpoint: {self.state.latest or 'none (nothing saved yet)'}. "
                "Lower the learning rate or enable gradient clipping (train.clip_gradients_norm)."
            )

    def _log(self, losses, epoch, images, seconds):
        values = {k: float(np.asarray(v)) for k, v in losses.items()}
        step = self.state.step
        if self.learning_rate_fn is not None:
            values["learning_rate"] = float(np.asarray(self.learning_rate_fn(step - 1)))
        values["loss_scale"] = float(np.asarray(self.train_step.loss_scale))
        values["images_per_second"] = images / max(seconds, 1e-9)
        self.history.append(dict(values, step=step, epoch=epoch))
        self.logger.log(step, values, prefix="train", epoch=epoch)

    def train_epoch(self, iterator, epoch):
        """Runs ``steps_per_epoch`` optimizer steps from ``iterator``."""
        tick = time.perf_counter()
        images = 0
        for index in range(self.steps_per_epoch):
            losses = self.train_step.run(iterator)
            images += self.global_batch_size
            last = index == self.steps_per_epoch - 1
            if (index + 1) % self.log_every_n_steps == 0 or last:
                self._check_finite()
                self._log(losses, epoch + 1, images, time.perf_counter() - tick)
                tick, images = time.perf_counter(), 0

    def run(self, stages, num_epochs):
        """Trains from the checkpointed epoch to ``num_epochs`` through ``stages``."""
        start_epoch = int(self.state.epoch.numpy())
        if start_epoch >= num_epochs:
            logging.info("Already trained %d of %d epochs; nothing to do.", start_epoch, num_epochs)
            return
        for stage in stages:
            end = min(stage.end_epoch, num_epochs)
            if end <= start_epoch:
                continue
            first = max(start_epoch, stage.start_epoch)
            if first >= end:
                break
            logging.info("Stage %d: epochs %d-%d %s", stage.index, first + 1, end,
                         stage.description)
            self.state.stage.assign(stage.index)
            if stage.on_enter is not None:
                stage.on_enter()
            iterator = iter(stage.make_dataset())
            for epoch in range(first, end):
                self.train_epoch(iterator, epoch)
                self.state.epoch.assign(epoch + 1)
                done = epoch + 1
                if done % self.save_every_n_epochs == 0 or done == num_epochs:
                    self.state.save()
                if self.evaluate_fn is not None and (
                        done % self.eval_every_n_epochs == 0 or done == num_epochs):
                    self.last_eval = self.evaluate_fn(done)
                    self.logger.log(self.state.step, _scalars(self.last_eval), prefix="eval",
                                    epoch=done)
                    if self.primary_metric:
                        self.state.save_best(float(self.last_eval[self.primary_metric]))

    def benchmark(self, iterator, steps, warmup_steps):
        """Times ``steps`` optimizer steps after ``warmup_steps``; returns images/second."""
        for _ in range(warmup_steps):
            losses = self.train_step.run(iterator)
        float(np.asarray(losses["total_loss"]))
        tick = time.perf_counter()
        for _ in range(steps):
            losses = self.train_step.run(iterator)
        float(np.asarray(losses["total_loss"]))
        seconds = time.perf_counter() - tick
        return steps * self.global_batch_size / seconds


def _scalars(metrics):
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, np.floating))}
