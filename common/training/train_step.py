"""The one train step of every model family (ARCHITECTURE.md: one implementation of each thing).

Every feature plugs in at one named point, in this order:

1. forward under the precision policy (``model(images, training=True)``),
2. loss in float32 (``task.compute_loss`` + the L2 term),
3. loss scaling (``LossScaleOptimizer.scale_loss`` under ``mixed_float16``),
4. gradients, divided by ``grad_accum_steps``,
5. accumulation over ``grad_accum_steps`` micro-batches (scaled gradients are
   summed; the loss scale cannot change inside one optimizer step, so the
   unscaled sum equals the gradient of the big batch's mean loss),
6. cross-replica reduction (``distribution.allreduce_gradients``, once per
   optimizer step and outside the XLA-compiled part),
7. clipping by global norm and the optimizer update (``optimizer.apply``: it
   unscales, skips non-finite steps and adapts the loss scale),
8. EMA update of all variables (weights and batch-norm statistics),
9. the divergence watch (:mod:`common.training.divergence`): NaN/Inf and
   exploding losses are counted on the device, read by the loop at log points.

Steps 1–4 are one function compiled with XLA when ``use_xla`` is set. Steps
1–7 run per replica through ``distribution.run`` (a plain call, except under
``tf.distribute`` where the micro-batches come from a distributed iterator);
step 8 and the step counters run once per step, outside the replicas.
"""
import keras
import tensorflow as tf

from common.training.distribution import SingleProcess
from common.training.divergence import DivergenceWatch
from common.training.optimizers import decayed_variables, l2_loss


class TrainStep:
    """Owns the compiled step; call :meth:`run` with an iterator of ``(images, labels)``.

    Args:
        model: the pure network.
        task: object with ``compute_loss(outputs, labels) -> dict`` holding a float32
            ``total_loss`` (mean over the micro-batch) and other float32 scalars.
        optimizer: a Keras optimizer, possibly a ``LossScaleOptimizer``.
        ema: optional :class:`~common.training.ema.ExponentialMovingAverage`.
        distribution: the cross-replica hook (default: single process).
        grad_accum_steps: micro-batches per optimizer step.
        use_xla: compile forward + backward with XLA.
        weight_decay: L2 coefficient (ignored for AdamW, which decays itself).
        weight_decay_exclude: regex of variable paths without L2.
        divergence: the :class:`~common.training.divergence.DivergenceWatch`
            (default: factor 10, patience 5).
    """

    def __init__(self, model, task, optimizer, ema=None, distribution=None, grad_accum_steps=1,
                 use_xla=False, weight_decay=0.0, weight_decay_exclude=None, divergence=None):
        self.model = model
        self.task = task
        self.optimizer = optimizer
        self.ema = ema
        self.distribution = distribution or SingleProcess()
        self.grad_accum_steps = int(grad_accum_steps)
        self.use_xla = bool(use_xla)
        self.variables = list(model.trainable_variables)
        self.loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        inner = optimizer.inner_optimizer if self.loss_scaled else optimizer
        uses_decoupled_decay = isinstance(inner, keras.optimizers.AdamW)
        decayed, _ = decayed_variables(self.variables, weight_decay_exclude)
        self.decayed = [] if uses_decoupled_decay else decayed
        self.weight_decay = 0.0 if uses_decoupled_decay else float(weight_decay)
        # Read on the host only at log points, so the step never forces a device sync.
        self.divergence = divergence or DivergenceWatch()
        self.nonfinite_streak = self.divergence.nonfinite_streak
        # Steps run, including those the loss scaler skipped (the optimizer's own
        # ``iterations`` counts only applied updates and drives the LR schedule).
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.distribution.prepare_optimizer(self.optimizer)
        self.optimizer.build(self.variables)
        # A nested function only for XLA: without it, steps 1-4 are traced inline into
        # the step, which tf.distribute needs for synchronized batch norm (a
        # cross-replica sync inside a nested tf.function is not supported).
        self._gradients = (tf.function(self._forward_backward, jit_compile=True,
                                       reduce_retracing=True)
                           if self.use_xla else self._forward_backward)
        self._step = tf.function(self._train_step, reduce_retracing=True)

    def _forward_backward(self, images, labels):
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            losses = dict(self.task.compute_loss(outputs, labels))
            regularization = l2_loss(self.decayed, self.weight_decay)
            total = tf.cast(losses["total_loss"], tf.float32) + regularization
            scaled = total / float(self.grad_accum_steps)
            if self.loss_scaled:
                scaled = self.optimizer.scale_loss(scaled)
        gradients = tape.gradient(scaled, self.variables)
        gradients = [tf.zeros_like(v) if g is None else g
                     for g, v in zip(gradients, self.variables)]
        losses["l2_loss"] = regularization
        losses["total_loss"] = total
        return gradients, losses

    def _train_step(self, iterator):
        batches = [next(iterator) for _ in range(self.grad_accum_steps)]
        losses = self.distribution.run(self._replica_step, batches)
        if self.ema is not None:
            self.ema.update()
        self.global_step.assign_add(1)
        self.divergence.update(losses["total_loss"], self.global_step)
        return losses

    def _replica_step(self, batches):
        accumulated, losses_sum = None, None
        for images, labels in batches:
            gradients, losses = self._gradients(images, labels)
            if accumulated is None:
                accumulated, losses_sum = list(gradients), dict(losses)
            else:
                accumulated = [a + g for a, g in zip(accumulated, gradients)]
                losses_sum = {k: losses_sum[k] + v for k, v in losses.items()}
        losses = {k: v / float(self.grad_accum_steps) for k, v in losses_sum.items()}
        accumulated = self.distribution.allreduce_gradients(accumulated)
        self.optimizer.apply(accumulated, self.variables)
        return losses

    def run(self, iterator):
        """One optimizer step over ``grad_accum_steps`` batches; returns the mean losses
        (float32 scalar tensors; reading them syncs with the device)."""
        return self._step(iterator)

    @property
    def loss_scale(self):
        """Current dynamic loss scale (1.0 without mixed precision)."""
        if self.loss_scaled:
            return self.optimizer.dynamic_scale
        return tf.constant(1.0)
