"""Learning-rate schedules with linear warm-up (official EfficientDet / EfficientNetV2 recipes).

All schedules are functions of the optimizer step and return float32 scalars:
warm-up from ``warmup_init`` to ``base_lr`` over ``warmup_steps``, then
``cosine`` (to 0 at ``total_steps``), ``exponential`` (×``decay_factor`` every
``decay_steps``, staircase), ``stepwise`` (×0.1 at 2/3 and ×0.01 at 5/6 of
training, the automl epochs 200/250 of 300), ``polynomial`` (power 0.9) or
``constant``.
"""
import math

import keras
import tensorflow as tf


class WarmupDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up followed by a decay.

    Args:
        base_lr: peak learning rate (already scaled to the global batch size).
        total_steps: optimizer steps of the whole run.
        warmup_steps: steps of linear warm-up (0 = none).
        warmup_init: learning rate at step 0.
        decay_method: ``cosine``, ``exponential``, ``stepwise``, ``polynomial`` or ``constant``.
        decay_steps: period of the exponential decay.
        decay_factor: factor of the exponential decay.
        min_lr: floor of the decayed learning rate.
    """

    def __init__(self, base_lr, total_steps, warmup_steps=0, warmup_init=0.0,
                 decay_method="cosine", decay_steps=1, decay_factor=0.97, min_lr=0.0):
        super().__init__()
        if decay_method not in ("cosine", "exponential", "stepwise", "polynomial", "constant"):
            raise ValueError(f"Unknown learning-rate decay {decay_method!r}.")
        self.base_lr = float(base_lr)
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, int(warmup_steps))
        self.warmup_init = float(warmup_init)
        self.decay_method = decay_method
        self.decay_steps = max(1, int(decay_steps))
        self.decay_factor = float(decay_factor)
        self.min_lr = float(min_lr)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        base = tf.constant(self.base_lr, tf.float32)
        decay_span = float(max(1, self.total_steps - self.warmup_steps))
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_span, 0.0, 1.0)
        if self.decay_method == "cosine":
            decayed = 0.5 * base * (1.0 + tf.cos(math.pi * progress))
        elif self.decay_method == "exponential":
            periods = tf.floor(tf.maximum(step - self.warmup_steps, 0.0) / self.decay_steps)
            decayed = base * tf.pow(self.decay_factor, periods)
        elif self.decay_method == "stepwise":
            fraction = step / float(self.total_steps)
            decayed = tf.where(fraction < 2.0 / 3.0, base,
                               tf.where(fraction < 5.0 / 6.0, base * 0.1, base * 0.01))
        elif self.decay_method == "polynomial":
            decayed = base * tf.pow(1.0 - progress, 0.9)
        else:
            decayed = base
        decayed = tf.maximum(decayed, self.min_lr)
        if self.warmup_steps == 0:
            return decayed
        warm = self.warmup_init + (base - self.warmup_init) * step / float(self.warmup_steps)
        return tf.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return dict(base_lr=self.base_lr, total_steps=self.total_steps,
                    warmup_steps=self.warmup_steps, warmup_init=self.warmup_init,
                    decay_method=self.decay_method, decay_steps=self.decay_steps,
                    decay_factor=self.decay_factor, min_lr=self.min_lr)


def build_schedule(train_config, steps_per_epoch, global_batch_size):
    """The schedule of a ``TrainConfig``; the learning rate scales linearly with
    ``global_batch_size / train_config.lr_reference_batch``."""
    scale = global_batch_size / float(train_config.lr_reference_batch)
    total = steps_per_epoch * train_config.num_epochs
    return WarmupDecaySchedule(
        base_lr=train_config.learning_rate * scale,
        total_steps=total,
        warmup_steps=int(round(train_config.lr_warmup_epoch * steps_per_epoch)),
        warmup_init=train_config.lr_warmup_init * scale,
        decay_method=train_config.lr_decay_method,
        decay_steps=int(round(train_config.lr_decay_epochs * steps_per_epoch)),
        decay_factor=train_config.lr_decay_factor,
    )
