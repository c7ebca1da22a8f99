"""Divergence watch of the train step: NaN/Inf losses and losses that explode.

The train step updates the watch on the device after every optimizer step
(no host sync); the loop reads it only at log points and before every
checkpoint, so a diverged run stops with the first bad step and never saves
its weights.

A finite loss *explodes* when it exceeds ``factor`` times the running
baseline: an exponential average (weight 0.1) of the earlier non-exploding
losses, started at the first step's loss. Outliers never move the baseline,
so a run whose loss shoots up stays flagged, while the baseline follows a
loss that falls during normal training. ``patience`` exploding steps in a
row is divergence; NaN/Inf counts from the first step without mixed
precision and after ``nonfinite_patience`` steps with it (the loss scaler
skips such steps and lowers the scale first).
"""
import tensorflow as tf

# Under mixed precision a non-finite loss skips the step and lowers the loss
# scale; only this many in a row (the scale would be ~1 by then) is divergence.
AMP_NONFINITE_PATIENCE = 30
_BASELINE_WEIGHT = 0.1


class DivergenceWatch:
    """Device-side counters of non-finite and exploding losses.

    Args:
        factor: a loss above ``factor`` x the baseline explodes; 0 turns the
            explosion check off (NaN/Inf are always checked).
        patience: exploding steps in a row that count as divergence.
    """

    def __init__(self, factor=10.0, patience=5):
        self.factor = float(factor)
        self.patience = max(1, int(patience))
        self.nonfinite_streak = tf.Variable(0, dtype=tf.int64, trainable=False,
                                            name="nonfinite_streak")
        self.explode_streak = tf.Variable(0, dtype=tf.int64, trainable=False,
                                          name="explode_streak")
        # Step number of the first step of the current bad streak (0: none).
        self.first_bad_step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                          name="first_bad_step")
        self.baseline = tf.Variable(float("nan"), dtype=tf.float32, trainable=False,
                                    name="loss_baseline")
        self.last_loss = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="last_loss")

    def update(self, loss, step):
        """Records step ``step``'s float32 scalar ``loss`` (inside the compiled step)."""
        loss = tf.cast(loss, tf.float32)
        finite = tf.math.is_finite(loss)
        unset = tf.math.is_nan(self.baseline)
        explodes = tf.logical_and(
            tf.logical_and(finite, tf.logical_not(unset)),
            tf.logical_and(self.factor > 0, loss > self.factor * self.baseline))
        good = tf.logical_and(finite, tf.logical_not(explodes))
        self.baseline.assign(tf.where(
            good, tf.where(unset, loss,
                           (1 - _BASELINE_WEIGHT) * self.baseline + _BASELINE_WEIGHT * loss),
            self.baseline))
        was_clean = tf.logical_and(tf.equal(self.nonfinite_streak, 0),
                                   tf.equal(self.explode_streak, 0))
        self.nonfinite_streak.assign(tf.where(finite, tf.constant(0, tf.int64),
                                              self.nonfinite_streak + 1))
        self.explode_streak.assign(tf.where(explodes, self.explode_streak + 1,
                                            tf.constant(0, tf.int64)))
        self.first_bad_step.assign(tf.where(
            good, tf.constant(0, tf.int64),
            tf.where(was_clean, tf.cast(step, tf.int64), self.first_bad_step)))
        self.last_loss.assign(loss)

    @property
    def in_bad_streak(self):
        """True while the latest step was non-finite or exploding (host read)."""
        return int(self.first_bad_step.numpy()) > 0

    def diverged(self, amp=False):
        """The divergence kind (``"nan"`` / ``"exploded"``) when a limit is reached, else None."""
        limit = AMP_NONFINITE_PATIENCE if amp else 1
        if int(self.nonfinite_streak.numpy()) >= limit:
            return "nan"
        if int(self.explode_streak.numpy()) >= self.patience:
            return "exploded"
        return None
