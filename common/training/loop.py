"""The epoch loop around the one train step: stages, logging, checkpoints, evaluation.

The loop never reads tensors on every step: losses are fetched only at log
points, so the device runs ahead of the host between them.

Resuming is exact: the checkpoint records the epoch and the steps already
taken in it, and each stage's ``make_dataset(first_epoch, skip_batches)``
rebuilds the epoch-structured stream from that point (see
:mod:`dataset.input_utils`), so a resumed run reads the examples an
uninterrupted run would have read.
"""
import dataclasses
import time
from typing import Callable, Optional

import numpy as np
from absl import logging

from common.progress import progress


class TrainingDivergedError(RuntimeError):
    """The loss became NaN/Inf or exploded; the message names the first bad step,
    the last good checkpoint and what to change."""


@dataclasses.dataclass
class TrainingStage:
    """Epochs ``[start_epoch, end_epoch)`` trained on one input pipeline.

    Attributes:
        make_dataset: ``(first_epoch, skip_batches) -> tf.data.Dataset``: the
            stage's training batches from epoch ``first_epoch`` on (at least
            through ``end_epoch``), without the first ``skip_batches``
            micro-batches of that epoch, which a resumed run already consumed.
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
        save_every_n_steps: also checkpoint every this many steps inside epochs (0: off).
        batches_per_step: micro-batches one dataset iterator yields per optimizer
            step (gradient accumulation x replicas fed by one pipeline).
        advice: ``kind -> str``, what to change when the run diverges
            (``kind`` is ``"nan"`` or ``"exploded"``); default: generic advice.
    """

    def __init__(self, train_step, state, logger, steps_per_epoch, global_batch_size,
                 learning_rate_fn=None, log_every_n_steps=10, save_every_n_epochs=1,
                 evaluate_fn=None, eval_every_n_epochs=1, primary_metric=None, amp=False,
                 save_every_n_steps=0, batches_per_step=1, advice=None):
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
        self.save_every_n_steps = max(0, int(save_every_n_steps))
        self.batches_per_step = max(1, int(batches_per_step))
        self.advice = advice or _default_advice
        self.last_eval = None
        self.best_epoch = None  # of the best evaluation in this run (None: none yet, or before a resume)
        self.history = []
        self._num_epochs = None  # shown in the progress bar; set by run()

    def _check_finite(self):
        """Raises :class:`TrainingDivergedError` when the divergence watch says so."""
        watch = self.train_step.divergence
        kind = watch.diverged(self.amp)
        if kind is None:
            return
        first = int(watch.first_bad_step.numpy()) or self.state.step
        if kind == "nan":
            what = (f"Loss is NaN/Inf from step {first} on "
                    f"({int(watch.nonfinite_streak.numpy())} step(s) in a row up to step "
                    f"{self.state.step})")
        else:
            what = (f"Loss exploded from step {first} on: {float(watch.last_loss.numpy()):.4g} at "
                    f"step {self.state.step}, above {watch.factor:g}x its running baseline "
                    f"{float(watch.baseline.numpy()):.4g} for "
                    f"{int(watch.explode_streak.numpy())} steps in a row")
        raise TrainingDivergedError(
            f"{what}. Last good checkpoint: {self.state.latest or 'none (nothing saved yet)'}; "
            f"nothing was saved after it. {self.advice(kind)}")

    def _save(self):
        """Checkpoints unless the latest step is non-finite or exploding (logged)."""
        self._check_finite()
        watch = self.train_step.divergence
        if watch.in_bad_streak:
            logging.warning("Not saving a checkpoint at step %d: the loss has been non-finite or "
                            "above %gx its baseline since step %d.", self.state.step,
                            watch.factor, int(watch.first_bad_step.numpy()))
            return None
        return self.state.save()

    def _log(self, losses, epoch, images, seconds, bar):
        values = {k: float(np.asarray(v)) for k, v in losses.items()}
        step = self.state.step
        if self.learning_rate_fn is not None:
            values["learning_rate"] = float(np.asarray(self.learning_rate_fn(step - 1)))
        values["loss_scale"] = float(np.asarray(self.train_step.loss_scale))
        values["images_per_second"] = images / max(seconds, 1e-9)
        self.history.append(dict(values, step=step, epoch=epoch))
        # With a bar on the terminal the values go beside it, not into log lines.
        self.logger.log(step, values, prefix="train", epoch=epoch, terminal=not bar.enabled)
        bar.set_postfix(**{k: v for k, v in values.items() if k.endswith("loss") and v},
                        img_s=values["images_per_second"])

    def train_epoch(self, iterator, epoch, first_step=0):
        """Runs optimizer steps ``first_step … steps_per_epoch - 1`` of ``epoch`` from ``iterator``."""
        tick = time.perf_counter()
        images = 0
        of = f"/{self._num_epochs}" if self._num_epochs else ""
        with progress(self.steps_per_epoch, f"epoch {epoch + 1}{of}", "step",
                      is_chief=getattr(self.logger, "is_chief", True), initial=first_step) as bar:
            for index in range(first_step, self.steps_per_epoch):
                losses = self.train_step.run(iterator)
                images += self.global_batch_size
                bar.update(1)
                last = index == self.steps_per_epoch - 1
                if (index + 1) % self.log_every_n_steps == 0 or last:
                    self._check_finite()
                    self._log(losses, epoch + 1, images, time.perf_counter() - tick, bar)
                    tick, images = time.perf_counter(), 0
                if (self.save_every_n_steps and not last
                        and self.state.step % self.save_every_n_steps == 0):
                    # Only a checkpoint inside an epoch needs the position (epoch ends reset it).
                    self.state.epoch_step.assign(index + 1)
                    self._save()

    def run(self, stages, num_epochs):
        """Trains from the checkpointed epoch to ``num_epochs`` through ``stages``."""
        self._num_epochs = num_epochs
        start_epoch = int(self.state.epoch.numpy())
        # Steps already taken in ``start_epoch`` (a checkpoint saved inside an epoch).
        start_step = int(self.state.epoch_step.numpy())
        if start_step >= self.steps_per_epoch:
            start_epoch, start_step = start_epoch + 1, 0
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
            skip = start_step if first == start_epoch else 0
            if skip:
                logging.info("Continuing epoch %d after step %d of %d: skipping the %d batches "
                             "it already used.", first + 1, skip, self.steps_per_epoch,
                             skip * self.batches_per_step)
            iterator = iter(stage.make_dataset(first, skip * self.batches_per_step))
            for epoch in range(first, end):
                self.train_epoch(iterator, epoch, skip if epoch == first else 0)
                self.state.epoch.assign(epoch + 1)
                self.state.epoch_step.assign(0)
                done = epoch + 1
                if done % self.save_every_n_epochs == 0 or done == num_epochs:
                    self._save()
                if self.evaluate_fn is not None and (
                        done % self.eval_every_n_epochs == 0 or done == num_epochs):
                    self.last_eval = self.evaluate_fn(done)
                    self.logger.log(self.state.step, _scalars(self.last_eval), prefix="eval",
                                    epoch=done)
                    if self.primary_metric:
                        self._keep_best(done)

    def _keep_best(self, epoch):
        value = float(self.last_eval[self.primary_metric])
        if self.state.save_best(value):
            self.best_epoch = epoch
        best = float(self.state.best_metric.numpy())
        when = (f"epoch {self.best_epoch}" if self.best_epoch is not None
                else "an epoch before this run resumed")
        kept = f", kept in {self.state.directory}/best" if self.state.directory else ""
        logging.info("Epoch %d: %s %.4f; best so far %.4f (%s%s).", epoch,
                     self.primary_metric, value, best, when, kept)

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


def _default_advice(kind):
    del kind
    return ("Lower train.learning_rate, lengthen the warm-up (train.lr_warmup_epoch) or clip "
            "gradients (train.clip_gradients_norm), then resume from the last good checkpoint.")


def _scalars(metrics):
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, np.floating))}
