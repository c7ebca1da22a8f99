"""Exponential moving average of all model variables (weights and batch-norm statistics).

Official EfficientDet / EfficientNet training keeps a shadow copy of every
variable, ``shadow = decay * shadow + (1 - decay) * value`` after each optimizer
step, with the warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` of
``tf.train.ExponentialMovingAverage(num_updates=t)``; evaluation, export and the
released checkpoints use the shadows.
"""
import contextlib

import tensorflow as tf


class ExponentialMovingAverage(tf.Module):
    """Shadows of ``variables``; trackable, so it is saved in checkpoints.

    Args:
        variables: the model variables to average (``model.weights``; float ones only).
        decay: target decay, e.g. 0.9998 (0 disables averaging: shadows track the values).
        warmup: use the ``(1 + t) / (10 + t)`` warm-up of the decay.
    """

    def __init__(self, variables, decay, warmup=True, name="ema"):
        super().__init__(name=name)
        self.decay = float(decay)
        self.warmup = warmup
        # Held outside tf.Module's tracking: the model saves its own variables.
        self._untracked = _Untracked([v for v in variables if "float" in str(v.dtype)])
        with tf.name_scope(name):
            self.shadows = [
                tf.Variable(tf.convert_to_tensor(v), trainable=False)
                for v in self.averaged_variables
            ]
            self.num_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_updates")
        # Shadows created under a tf.distribute scope are mirrored: a raw kernel on
        # their handle would update one replica's copy only, so they are assigned
        # through the variable (which updates every copy).
        self._fused = not any(isinstance(s, tf.distribute.DistributedValues)
                              for s in self.shadows)

    @property
    def averaged_variables(self):
        """The averaged model variables (float ones only), in the order of :attr:`shadows`.

        ``shadows[i]`` averages ``averaged_variables[i]``; a checkpoint saves
        shadow ``i`` under :func:`common.training.checkpoints.ema_shadow_key`, so
        restoring code pairs saved shadows with model variables through this
        list. The variables themselves are not tracked (the model saves them).
        Not called ``variables``: ``tf.Module.variables`` already means the
        module's own (shadow) variables.
        """
        return self._untracked.items

    @property
    def _variables(self):
        # Kept for callers written before :attr:`averaged_variables` was public.
        return self.averaged_variables

    def current_decay(self):
        """The decay the next update uses (float32 scalar tensor)."""
        decay = tf.constant(self.decay, tf.float32)
        if self.warmup:
            t = tf.cast(self.num_updates, tf.float32)
            decay = tf.minimum(decay, (1.0 + t) / (10.0 + t))
        return decay

    def update(self):
        """Moves every shadow towards its variable; call after each optimizer step.

        ``shadow -= (1 - decay) * (shadow - value)``: one fused
        ``ResourceApplyGradientDescent`` per variable (4 graph ops instead of 7);
        mirrored (tf.distribute) shadows use ``assign_sub``, which updates every
        replica's copy, wherever ``update`` is called from.
        """
        rate = 1.0 - self.current_decay()
        for shadow, variable in zip(self.shadows, self.averaged_variables):
            delta = shadow - tf.cast(tf.convert_to_tensor(variable), shadow.dtype)
            if self._fused:
                tf.raw_ops.ResourceApplyGradientDescent(
                    var=shadow.handle, alpha=tf.cast(rate, shadow.dtype), delta=delta)
            else:
                shadow.assign_sub(tf.cast(rate, shadow.dtype) * delta)
        self.num_updates.assign_add(1)

    def reset(self):
        """Sets every shadow to its variable's current value (after loading weights)."""
        for shadow, variable in zip(self.shadows, self.averaged_variables):
            shadow.assign(tf.convert_to_tensor(variable))

    def copy_to_model(self):
        """Overwrites the model variables with the shadows (for export / inference)."""
        for shadow, variable in zip(self.shadows, self.averaged_variables):
            variable.assign(shadow)

    @contextlib.contextmanager
    def averaged_weights(self):
        """Temporarily puts the shadows into the model (evaluation); restores after."""
        backup = [tf.identity(tf.convert_to_tensor(v)) for v in self.averaged_variables]
        self.copy_to_model()
        try:
            yield
        finally:
            for value, variable in zip(backup, self.averaged_variables):
                variable.assign(value)


class _Untracked:
    """A plain holder that checkpoint tracking does not look into."""

    def __init__(self, items):
        self.items = items
