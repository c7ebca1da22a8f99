"""The public reference: ``keras.applications.EfficientNetV2S`` (random weights).

Trained by a plain ``tf.function`` that does the same work as
:class:`common.training.train_step.TrainStep` with the same settings — forward
under the precision policy, the same float32 loss (the project's
:class:`~efficientnet_v2.task.ClassificationTask`) plus the same L2 term, loss
scaling under mixed precision, gradients (XLA-compiled when ours are), the same
optimizer (built by :func:`common.training.optimizers.build_optimizer`,
including global-norm clipping) and the same EMA — but without any of our
plumbing (iterators, distribution hooks, step counters).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from common.training.optimizers import decayed_variables, l2_loss


def build_reference_classifier(image_size, num_classes):
    """Keras' EfficientNetV2-S with logits out, taking already-normalized images.

    ``include_preprocessing=False`` because our network and pipeline feed
    normalized images; ``classifier_activation=None`` so both losses start
    from logits.
    """
    return keras.applications.EfficientNetV2S(
        weights=None, include_top=True, classes=int(num_classes),
        input_shape=(*image_size, 3), classifier_activation=None, include_preprocessing=False)


class ReferenceTrainStep:
    """A plain train step for any Keras classifier.

    Args:
        model: the Keras model (``[B, H, W, 3]`` → logits ``[B, C]``).
        task: object with ``compute_loss(logits, labels)`` (float32 ``total_loss``).
        optimizer: a Keras optimizer, possibly a ``LossScaleOptimizer``.
        ema: optional :class:`~common.training.ema.ExponentialMovingAverage` of ``model.weights``.
        use_xla: compile forward + backward with XLA.
        weight_decay, weight_decay_exclude: the L2 term, as in the recipe.
    """

    def __init__(self, model, task, optimizer, ema=None, use_xla=False, weight_decay=0.0,
                 weight_decay_exclude=None):
        self.model = model
        self.task = task
        self.optimizer = optimizer
        self.ema = ema
        self.variables = list(model.trainable_variables)
        self.loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self.decayed, _ = decayed_variables(self.variables, weight_decay_exclude)
        self.weight_decay = float(weight_decay)
        optimizer.build(self.variables)
        self._gradients = tf.function(self._forward_backward, jit_compile=bool(use_xla))
        self._step = tf.function(self._train_step)

    def _forward_backward(self, images, labels):
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            loss = self.task.compute_loss(logits, labels)["total_loss"]
            loss = loss + l2_loss(self.decayed, self.weight_decay)
            scaled = self.optimizer.scale_loss(loss) if self.loss_scaled else loss
        return tape.gradient(scaled, self.variables), loss

    def _train_step(self, images, labels):
        gradients, loss = self._gradients(images, labels)
        self.optimizer.apply(gradients, self.variables)
        if self.ema is not None:
            self.ema.update()
        return loss

    def run(self, images, labels):
        """One optimizer step; returns the float32 loss tensor."""
        return self._step(images, labels)
