"""Optimizers and L2 weight decay.

SGD and RMSProp use the official L2 term ``weight_decay * Σ ||w||² / 2`` over
the matching variables, added to the loss in the train step (not as per-layer
regularizers); AdamW uses decoupled decay with the same exclusion pattern.
Global-norm clipping is done by the optimizer on unscaled gradients.

SGD with momentum and RMSProp with momentum update each variable with one fused
TensorFlow kernel (``ResourceApplyKerasMomentum`` / ``ResourceApplyRMSProp``,
the kernels Keras 2 used) instead of the ~8 / ~17 element-wise ops per
variable of the Keras 3 update: the same formulas, the same slot variables and
checkpoints, far fewer graph ops to trace and optimize (with the fused EMA, the
V2-S train step went from 33,046 to 22,676 ops; benchmarks/README.md) and fewer
kernel launches per step on a GPU.
"""
import re

import keras
import tensorflow as tf


def _tf_variable(variable):
    """The ``tf.Variable`` (or tf.distribute variable) behind a Keras variable."""
    return variable.value if isinstance(variable, keras.Variable) else variable


class FusedSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` whose momentum update is one ``ResourceApplyKerasMomentum``
    per variable: ``m = momentum * m - lr * g; w += m`` (Nesterov:
    ``w += momentum * m - lr * g``), exactly Keras' formulas. Plain SGD
    (momentum 0) and sparse gradients use Keras' own update."""

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum == 0 or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        variable = _tf_variable(variable)
        slot = _tf_variable(self.momentums[self._get_variable_index(variable)])
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=slot.handle, lr=tf.cast(learning_rate, dtype),
            grad=tf.cast(gradient, dtype), momentum=tf.cast(self.momentum, dtype),
            use_nesterov=self.nesterov)


class FusedRMSprop(keras.optimizers.RMSprop):
    """``keras.optimizers.RMSprop`` whose update (with momentum, not centered) is one
    ``ResourceApplyRMSProp`` per variable: ``v = rho * v + (1 - rho) * g²;
    m = momentum * m + lr * g / sqrt(v + epsilon); w -= m`` — Keras' formulas,
    epsilon inside the square root as in the official EfficientNet training.
    Other settings use Keras' own update."""

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum == 0 or self.centered or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        variable = _tf_variable(variable)
        index = self._get_variable_index(variable)
        velocity = _tf_variable(self._velocities[index])
        momentum = _tf_variable(self._momentums[index])
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyRMSProp(
            var=variable.handle, ms=velocity.handle, mom=momentum.handle,
            lr=tf.cast(learning_rate, dtype), rho=tf.cast(self.rho, dtype),
            momentum=tf.cast(self.momentum, dtype), epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


def build_optimizer(name, learning_rate, momentum=0.9, weight_decay=0.0, clip_norm=0.0,
                    mixed_precision=False, no_decay_variables=()):
    """Creates the optimizer.

    Args:
        name: ``sgd``, ``rmsprop``, ``adam`` or ``adamw``.
        learning_rate: float or schedule.
        momentum: SGD / RMSProp momentum.
        weight_decay: decoupled decay rate, used only by ``adamw``.
        clip_norm: global-norm clipping threshold (0 = off).
        mixed_precision: wrap in a dynamic ``LossScaleOptimizer``.
        no_decay_variables: variables AdamW must not decay (see :func:`decayed_variables`).

    Returns:
        A Keras optimizer.
    """
    clip = dict(global_clipnorm=clip_norm) if clip_norm and clip_norm > 0 else {}
    if name == "sgd":
        optimizer = FusedSGD(learning_rate, momentum=momentum, **clip)
    elif name == "rmsprop":
        # Official EfficientNet(V2) settings: decay 0.9, epsilon 1e-3.
        optimizer = FusedRMSprop(learning_rate, rho=0.9, momentum=momentum, epsilon=1e-3,
                                 **clip)
    elif name == "adam":
        optimizer = keras.optimizers.Adam(learning_rate, **clip)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, **clip)
    else:
        raise ValueError(f"Unknown optimizer {name!r}; use sgd, rmsprop, adam or adamw.")
    if name == "adamw" and no_decay_variables:
        optimizer.exclude_from_weight_decay(var_list=list(no_decay_variables))
    if mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def decayed_variables(variables, exclude_pattern):
    """Splits ``variables`` into (decayed, excluded) by the regex ``exclude_pattern``
    on variable paths (batch-norm parameters, biases, BiFPN fusion weights)."""
    pattern = re.compile(exclude_pattern) if exclude_pattern else None
    excluded = [v for v in variables if pattern is not None and pattern.match(v.path)]
    excluded_ids = {id(v) for v in excluded}
    return [v for v in variables if id(v) not in excluded_ids], excluded


def l2_loss(variables, weight_decay):
    """``weight_decay * Σ ||v||² / 2`` in float32 (0 when there is nothing to decay)."""
    if not variables or not weight_decay:
        return tf.constant(0.0, tf.float32)
    return weight_decay * tf.add_n(
        [tf.nn.l2_loss(tf.cast(tf.convert_to_tensor(v), tf.float32)) for v in variables]
    )
