"""The one checkpoint manager: model, optimizer (with loss scale), EMA, step, epoch, stage.

Checkpoints are TensorFlow object-based checkpoints in ``model_dir``
(``ckpt-<step>.index/.data``), written atomically by TensorFlow (the
``checkpoint`` state file is updated only after the data is complete), keeping
the last ``max_to_keep``. ``model_dir/best/`` holds the best evaluation so far.
:func:`common.checkpoints.restore_for_inference` reads them for eval / export.

A save killed half-way leaves TensorFlow's temporary ``ckpt-<step>_temp``
folder (and possibly a ``checkpoint.tmp…`` state file) behind, never a
listed checkpoint; :func:`remove_stale_checkpoint_files` deletes those at
start-up.
"""
import os
import re
import shutil

import tensorflow as tf
from absl import logging

# The object names a CheckpointState saves (``tf.train.Checkpoint`` children):
# changing one breaks resuming from, and evaluating, every existing checkpoint.
# :mod:`common.checkpoints.restore` reads training checkpoints through these.
MODEL = "model"
# Every model variable by its path. Keras 3 networks built from custom layers are
# only partly reachable through ``MODEL`` (checkpoint tracking stops at layers held
# in plain containers), and trainable variables are also reachable through the
# optimizer, but batch-norm moving statistics of inner layers only through this.
MODEL_WEIGHTS = "model_weights"
OPTIMIZER = "optimizer"
EMA = "ema"
EPOCH = "epoch"
STAGE = "stage"
EPOCH_STEP = "epoch_step"
BEST_METRIC = "best_metric"
STEP = "step"

# Attributes of the EMA object (``ExponentialMovingAverage.shadows`` / ``.num_updates``).
EMA_SHADOWS = "shadows"
EMA_NUM_UPDATES = "num_updates"

# How an object-based checkpoint names a saved variable's value.
_VALUE_SUFFIX = ".ATTRIBUTES/VARIABLE_VALUE"
# The key of the object graph every object-based checkpoint holds.
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
# Present exactly when the checkpoint holds an EMA.
EMA_NUM_UPDATES_KEY = f"{EMA}/{EMA_NUM_UPDATES}/{_VALUE_SUFFIX}"
# Prefix of every model variable's key.
MODEL_KEY_PREFIX = f"{MODEL}/"
# Prefix of the keys of :data:`MODEL_WEIGHTS` (absent from checkpoints written
# before it existed, which hold inner batch-norm statistics only as EMA shadows).
MODEL_WEIGHTS_KEY_PREFIX = f"{MODEL_WEIGHTS}/"


class ModelWeights(tf.Module):
    """Every variable of a network, tracked by its path (``model.weights`` order).

    Args:
        model: a built Keras network whose variable paths are unique.
    """

    def __init__(self, model):
        super().__init__(name=MODEL_WEIGHTS)
        by_path = {}
        for variable in model.weights:
            if variable.path in by_path:
                raise ValueError(f"Two variables of {model.name} share the path "
                                 f"{variable.path!r}; checkpoints need unique paths.")
            by_path[variable.path] = variable
        self.by_path = by_path


def holds_model_weights(keys):
    """True when a checkpoint with variable ``keys`` saved :data:`MODEL_WEIGHTS`."""
    return any(k.startswith(MODEL_WEIGHTS_KEY_PREFIX) for k in keys)


def training_checkpoint(model, ema=None, **objects):
    """The ``tf.train.Checkpoint`` of ``model`` (all its variables), ``ema`` (if
    not None) and ``objects`` (named by this module's layout constants)."""
    objects = {MODEL: model, MODEL_WEIGHTS: ModelWeights(model), **objects}
    if ema is not None:
        objects[EMA] = ema
    return tf.train.Checkpoint(**objects)


def ema_shadow_key(index):
    """The checkpoint key of EMA shadow ``index`` (the shadow of
    ``ExponentialMovingAverage.averaged_variables[index]``)."""
    return f"{EMA}/{EMA_SHADOWS}/{index}/{_VALUE_SUFFIX}"


_STALE = re.compile(r"^(ckpt-\d+_temp.*|checkpoint\.tmp[0-9a-f]*)$")


def remove_stale_checkpoint_files(directory):
    """Deletes the temporaries of interrupted checkpoint saves in ``directory`` and
    ``directory/best`` (each logged); returns the removed paths."""
    removed = []
    for folder in (directory, os.path.join(directory, "best")):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if not _STALE.match(name):
                continue
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(path)
            logging.warning("Removed %s, left by a checkpoint save that was interrupted.", path)
    return removed


class CheckpointState:
    """Trackable training state saved with every checkpoint.

    The checkpoint's objects are named by this module's layout constants
    (:data:`MODEL`, :data:`OPTIMIZER`, :data:`EMA`, :data:`EPOCH`, :data:`STAGE`,
    :data:`EPOCH_STEP`, :data:`BEST_METRIC`, :data:`STEP`), which
    :mod:`common.checkpoints.restore` reads back.

    Args:
        model, optimizer, ema: the objects to save (``ema`` may be None).
        step: int64 variable counting train steps (``TrainStep.global_step``);
            default: the optimizer's applied-update counter.
        max_to_keep: how many recent checkpoints stay on disk.
        directory: the model directory.
        is_chief: only the chief writes; other ranks can still restore.
    """

    def __init__(self, directory, model, optimizer, ema=None, max_to_keep=5, is_chief=True,
                 step=None):
        self.directory = directory
        self.is_chief = is_chief
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.stage = tf.Variable(0, dtype=tf.int64, trainable=False, name="stage")
        # Optimizer steps already taken in epoch ``epoch`` (a save inside an epoch).
        self.epoch_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_step")
        self.best_metric = tf.Variable(float("-inf"), dtype=tf.float32, trainable=False,
                                       name="best_metric")
        self.step_variable = step if step is not None else optimizer.iterations
        self._objects = {OPTIMIZER: optimizer, EPOCH: self.epoch, STAGE: self.stage,
                         EPOCH_STEP: self.epoch_step, BEST_METRIC: self.best_metric,
                         STEP: self.step_variable}
        self.model, self.ema = model, ema
        self.checkpoint = training_checkpoint(model, ema, **self._objects)
        self.optimizer = optimizer
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory,
                                                  max_to_keep=max_to_keep)
        self._best_manager = None

    @property
    def step(self):
        """Train steps taken."""
        return int(self.step_variable.numpy())

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def save(self):
        """Writes a checkpoint numbered by the step (chief only); returns its prefix."""
        if not self.is_chief:
            return None
        path = self.manager.save(checkpoint_number=self.step)
        logging.info("Saved checkpoint %s (epoch %d, step %d)", path,
                     int(self.epoch.numpy()) + (1 if int(self.epoch_step.numpy()) else 0),
                     self.step)
        return path

    def _restore_without_model_weights(self, path):
        """Restores a checkpoint written before :data:`MODEL_WEIGHTS` existed: the
        trainable variables come through the optimizer; batch-norm statistics of
        inner layers were saved only as EMA shadows and restart from those."""
        legacy = tf.train.Checkpoint(**{MODEL: self.model, **self._objects},
                                     **({EMA: self.ema} if self.ema is not None else {}))
        legacy.restore(path).expect_partial()
        trainable = {id(v) for v in self.model.trainable_weights}
        statistics = [(v, s) for v, s in zip(self.ema.averaged_variables, self.ema.shadows)
                      if id(v) not in trainable] if self.ema is not None else []
        for variable, shadow in statistics:
            variable.assign(shadow)
        logging.warning(
            "%s predates checkpoints that hold every model variable: its %s",
            path, f"{len(statistics)} non-trainable variables (batch-norm statistics) restart "
            "from their moving averages." if statistics else
            "batch-norm statistics of inner layers restart from their initial values.")

    def save_best(self, metric_value):
        """Keeps ``model_dir/best`` when ``metric_value`` beats the best so far.

        Returns:
            True if this was a new best.
        """
        if metric_value <= float(self.best_metric.numpy()):
            return False
        self.best_metric.assign(metric_value)
        if self.is_chief:
            if self._best_manager is None:
                self._best_manager = tf.train.CheckpointManager(
                    self.checkpoint, os.path.join(self.directory, "best"), max_to_keep=1)
            path = self._best_manager.save(checkpoint_number=self.step)
            logging.info("New best %.5f: saved %s", metric_value, path)
        return True

    def restore_latest(self):
        """Restores the newest checkpoint in the directory, if any.

        Returns:
            The restored prefix, or None when the directory has no checkpoint.
        """
        path = self.manager.latest_checkpoint
        if path is None:
            return None
        if holds_model_weights(tf.train.load_checkpoint(path).get_variable_to_shape_map()):
            self.checkpoint.restore(path).assert_existing_objects_matched()
        else:
            self._restore_without_model_weights(path)
        logging.info("Resumed from %s (epoch %d done, %d steps into the next; step %d)", path,
                     int(self.epoch.numpy()), int(self.epoch_step.numpy()), self.step)
        return path
