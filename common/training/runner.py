"""Builds everything a run needs from an ExperimentConfig and runs train / eval.

``main.py`` parses flags into a config and calls :func:`train` or
:func:`evaluate`; tests call them directly.
"""
import dataclasses
import json
import os
import random
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from common.atomic_files import atomic_write
from common.checkpoints import CheckpointError, restore_for_inference, restore_with_report
from common.config import ConfigError, build_network, dump_config, family_of
from common.training.checkpoints import CheckpointState, remove_stale_checkpoint_files
from common.training.determinism import configure_determinism
from common.training.divergence import DivergenceWatch
from common.training.distribution import SingleProcess
from common.training.ema import ExponentialMovingAverage
from common.training.freeze import apply_freeze
from common.training.logger import MetricLogger
from common.training.loop import TrainingLoop
from common.training.optimizers import build_optimizer, decayed_variables
from common.training.schedules import build_schedule
from common.training.train_step import TrainStep


@dataclasses.dataclass
class RunOptions:
    """Run-level switches that are not part of the recipe."""

    init_checkpoint: str | None = None
    resume: bool = False
    eval_during_training: bool = False
    benchmark_steps: int = 0
    eval_steps: int | None = None
    checkpoint_path: str | None = None
    save_every_n_epochs: int = 1


def set_seed(seed):
    """Seeds Python, NumPy, TensorFlow and Keras (None = leave random)."""
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    keras.utils.set_random_seed(seed)


def check_file_pattern(pattern, what):
    """Raises one clear ConfigError when ``pattern`` is unset or matches nothing."""
    if not pattern:
        raise ConfigError(f"No {what} given: set data.{what} (or the --{what} flag).")
    files = tf.io.gfile.glob(pattern)
    if not files:
        raise ConfigError(f"data.{what} {pattern!r} matches no files; check the path or glob.")
    return sorted(files)


def count_records(files):
    """Number of records in TFRecord ``files`` (read once, at start-up)."""
    return int(tf.data.TFRecordDataset(files).reduce(np.int64(0), lambda n, _: n + 1).numpy())


def prepare_model_dir(path):
    """Creates the model directory, or raises one ConfigError saying why it cannot be used."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--model_dir {path!r} is a file, not a directory; choose another "
                          "--model_dir.")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as error:
        raise ConfigError(f"--model_dir {path!r} cannot be created or written to "
                          f"({error.strerror}); choose a writable directory.") from None


def _apply_policy(config):
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if config.runtime.mixed_precision else "float32")


def train(config, options=None, distribution=None):
    """Trains (and, with ``options.eval_during_training``, evaluates) per ``config``.

    Returns:
        A dict with ``model_dir``, ``steps``, ``epochs``, ``history`` (logged train
        metrics), ``eval`` (last evaluation or None) and ``benchmark_images_per_second``.

    Raises:
        ConfigError: missing data, bad settings — before any training starts.
        CheckpointError: unusable ``init_checkpoint`` or resume state.
    """
    options = options or RunOptions()
    distribution = distribution or SingleProcess()
    runtime, train_cfg = config.runtime, config.train
    if runtime.sync_bn and not distribution.syncs_batch_norm:
        raise ConfigError(
            "runtime.sync_bn (--sync_bn) does not synchronize under "
            f"{type(distribution).__name__}: Keras 3 batch norm syncs only across "
            "tf.distribute replicas, and Horovod's SyncBatchNormalization does not work with "
            "Keras 3. Use --strategy mirrored / multi_worker, or set runtime.sync_bn=false.")
    if runtime.sync_bn and runtime.use_xla and distribution.size > 1:
        raise ConfigError(
            "runtime.sync_bn (--sync_bn) cannot be combined with runtime.use_xla (--use_xla) "
            "across replicas: tf.distribute cannot all-reduce batch-norm statistics inside an "
            "XLA-compiled function. Drop one of the two.")
    if not runtime.model_dir:
        raise ConfigError("runtime.model_dir is not set: pass --model_dir.")
    train_files = check_file_pattern(config.data.train_file_pattern, "train_file_pattern")
    data_files = list(train_files)
    if options.eval_during_training:
        data_files += check_file_pattern(config.data.val_file_pattern, "val_file_pattern")
    prepare_model_dir(runtime.model_dir)
    latest = tf.train.latest_checkpoint(runtime.model_dir)
    if latest is not None and not options.resume and not options.benchmark_steps:
        raise ConfigError(
            f"{runtime.model_dir!r} already holds checkpoints: pass --resume to continue "
            "training there, or choose a new --model_dir.")
    if options.resume and latest is None:
        raise ConfigError(
            f"--resume: no checkpoint in {runtime.model_dir!r}; check --model_dir, or drop "
            "--resume to start a new run there.")
    resuming = options.resume and latest is not None
    _check_records(config, train_files)
    if distribution.is_chief:
        remove_stale_checkpoint_files(runtime.model_dir)
        if not resuming and not options.benchmark_steps:
            dump_config(config, os.path.join(runtime.model_dir, "config.yaml"))

    configure_determinism(runtime.deterministic)
    set_seed(train_cfg.seed)
    _apply_policy(config)
    experiment = family_of(config.model.name).make_experiment(config, distribution)
    # Variables of the model, optimizer, EMA and step are created on every replica.
    with distribution.scope():
        model = build_network(config)
        # Weights first, then freezing: both before the optimizer, L2 term and EMA
        # are built, so those only ever see the trainable variables / loaded values.
        restored = None
        if options.init_checkpoint and not resuming:
            restored = restore_with_report(model, options.init_checkpoint, use_ema=True,
                                           skip_mismatch=True)
        frozen = apply_freeze(model, config)
        if restored is not None or train_cfg.freeze:
            _log_fine_tuning_start(model, options.init_checkpoint, restored, frozen)

        global_batch = train_cfg.batch_size * distribution.size * train_cfg.grad_accum_steps
        if train_cfg.steps_per_epoch:
            steps_per_epoch = train_cfg.steps_per_epoch
        else:
            with _user_errors(config, train_files):
                num_examples = count_records(train_files)
            steps_per_epoch = num_examples // global_batch
            if steps_per_epoch == 0:
                raise ConfigError(
                    f"The training data has {num_examples} examples, fewer than one global batch "
                    f"({global_batch} = batch {train_cfg.batch_size} x {distribution.size} "
                    f"replicas x {train_cfg.grad_accum_steps} accumulation steps); "
                    "lower train.batch_size.")
        # Micro-batches one input pipeline yields per optimizer step (tf.distribute
        # feeds all of a worker's replicas from its one pipeline).
        batches_per_step = train_cfg.grad_accum_steps * (distribution.size
                                                         // distribution.num_shards)
        schedule = build_schedule(train_cfg, steps_per_epoch, global_batch)
        _, no_decay = decayed_variables(model.trainable_variables, train_cfg.weight_decay_exclude)
        optimizer = build_optimizer(
            train_cfg.optimizer, schedule, momentum=train_cfg.momentum,
            weight_decay=train_cfg.weight_decay, clip_norm=train_cfg.clip_gradients_norm,
            mixed_precision=runtime.mixed_precision, no_decay_variables=no_decay)
        ema = None
        if train_cfg.moving_average_decay > 0:
            ema = ExponentialMovingAverage(model.weights, train_cfg.moving_average_decay)
        step = TrainStep(model, experiment.task, optimizer, ema=ema, distribution=distribution,
                         grad_accum_steps=train_cfg.grad_accum_steps, use_xla=runtime.use_xla,
                         weight_decay=train_cfg.weight_decay,
                         weight_decay_exclude=train_cfg.weight_decay_exclude,
                         divergence=DivergenceWatch(train_cfg.divergence_factor,
                                                    train_cfg.divergence_patience))
        state = CheckpointState(runtime.model_dir, model, optimizer, ema,
                                max_to_keep=runtime.keep_checkpoint_max,
                                is_chief=distribution.is_chief, step=step.global_step)
        if resuming:
            _restore_for_resume(state, latest, config)
        distribution.broadcast_variables(list(model.weights) + list(optimizer.variables)
                                         + (list(ema.shadows) if ema else []))

    logger = MetricLogger(runtime.model_dir, distribution.is_chief)
    logger.metadata({"model_name": config.model.name, "global_batch_size": global_batch,
                     "steps_per_epoch": steps_per_epoch, "num_epochs": train_cfg.num_epochs,
                     "replicas": distribution.size, "mixed_precision": runtime.mixed_precision,
                     "use_xla": runtime.use_xla, "grad_accum_steps": train_cfg.grad_accum_steps})

    evaluate_fn = None
    if options.eval_during_training:
        def evaluate_fn(epoch):
            # Batch-norm statistics follow each replica's own data: every process
            # evaluates with the chief's, which are the ones in the checkpoint.
            distribution.broadcast_variables(list(model.non_trainable_weights)
                                             + (list(ema.shadows) if ema else []))
            results_json = os.path.join(runtime.model_dir, f"eval_epoch{epoch}.json") \
                if distribution.is_chief else None
            preview = None
            if distribution.is_chief and runtime.model_dir:
                step_now = int(step.global_step.numpy())
                preview = lambda images: logger.images(step_now, "eval/examples", images)  # noqa: E731
            return _evaluate_with_ema(experiment, model, ema, config, options.eval_steps,
                                      results_json, preview)

    loop = TrainingLoop(step, state, logger, steps_per_epoch, global_batch,
                        learning_rate_fn=schedule,
                        log_every_n_steps=min(runtime.log_every_n_steps, steps_per_epoch),
                        save_every_n_epochs=options.save_every_n_epochs,
                        evaluate_fn=evaluate_fn,
                        eval_every_n_epochs=config.eval.every_n_epochs,
                        primary_metric=experiment.primary_metric, amp=runtime.mixed_precision,
                        save_every_n_steps=runtime.checkpoint_every_n_steps,
                        batches_per_step=batches_per_step,
                        advice=_divergence_advice(config))
    experiment_stages = experiment.stages(model, train_cfg.num_epochs, train_cfg.batch_size,
                                          train_cfg.seed,
                                          batches_per_epoch=steps_per_epoch * batches_per_step)
    stages = [
        dataclasses.replace(stage, make_dataset=_distributed(distribution, stage.make_dataset))
        for stage in experiment_stages]
    result = {"model_dir": runtime.model_dir, "steps_per_epoch": steps_per_epoch}
    try:
        if options.benchmark_steps:
            if stages[-1].on_enter is not None:
                stages[-1].on_enter()
            # Timing needs an endless stream, whatever the run's length.
            iterator = iter(distribution.distribute_dataset(
                experiment_stages[-1].make_dataset().repeat()))
            warmup = max(2, options.benchmark_steps // 5)
            speed = loop.benchmark(iterator, options.benchmark_steps, warmup)
            logging.info("Benchmark: %.2f images/second (global batch %d, %d steps after %d warm-up)",
                         speed, global_batch, options.benchmark_steps, warmup)
            result["benchmark_images_per_second"] = speed
        else:
            with _user_errors(config, data_files):
                loop.run(stages, train_cfg.num_epochs)
    finally:
        logger.close()
    result.update(steps=state.step, epochs=int(state.epoch.numpy()), history=loop.history,
                  eval=loop.last_eval, model=model, ema=ema)
    return result


def _check_records(config, files):
    """Pre-flight: the first record of every file is readable and of this task's kind."""
    from dataset.record_check import check_record_files

    check_record_files(files, config.task)


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


def _divergence_advice(config):
    """``kind -> str``: what to change when the loss diverges, for this run's settings."""
    train_cfg = config.train

    def advice(kind):
        lr = f"train.learning_rate={train_cfg.learning_rate:g}"
        lower = f"--override train.learning_rate={train_cfg.learning_rate / 10:g}"
        if kind == "nan" and config.runtime.mixed_precision:
            first = ("Under mixed_float16 the loss scale already fell to its floor, so the "
                     "float16 range is not the cause. ")
        else:
            first = ""
        if train_cfg.clip_gradients_norm > 0:
            fix = (f"Gradient clipping is already on (train.clip_gradients_norm="
                   f"{train_cfg.clip_gradients_norm:g}), so lower the learning rate ({lr}; "
                   f"e.g. {lower}) or lengthen the warm-up (train.lr_warmup_epoch="
                   f"{train_cfg.lr_warmup_epoch:g})")
        else:
            fix = (f"Lower the learning rate ({lr}; e.g. {lower}) or clip gradients "
                   "(--override train.clip_gradients_norm=10)")
        return (f"{first}{fix}, then continue from the last good checkpoint with --resume "
                "and those overrides.")

    return advice


class _user_errors:
    """Turns data and memory errors raised while training into one-line user errors."""

    def __init__(self, config, files, training=True):
        self.config = config
        self.files = files
        self.training = training

    def __enter__(self):
        return self

    def __exit__(self, exc_type, error, traceback):
        if error is None or not isinstance(error, tf.errors.OpError):
            return False
        if isinstance(error, tf.errors.ResourceExhaustedError):
            raise ConfigError(out_of_memory_message(self.config, self.training)) from None
        from dataset.record_check import explain_data_error

        explained = explain_data_error(error, self.files)
        if explained is not None:
            raise explained from None
        return False


def out_of_memory_message(config, training=True):
    """What to lower when a train (or evaluation) step runs out of memory."""
    model = config.model
    size = "x".join(str(v) for v in model.image_size)
    if not training:
        batch = config.eval.batch_size
        return (f"Out of memory evaluating {model.name} at {size} with eval.batch_size {batch}: "
                f"lower it (e.g. --override eval.batch_size={max(1, batch // 2)}).")
    train_cfg = config.train
    batch = train_cfg.batch_size
    smaller = max(1, batch // 2)
    return (f"Out of memory training {model.name} at {size} with train.batch_size {batch} per "
            f"replica: lower --batch_size (e.g. {smaller}) and raise --grad_accum_steps (e.g. "
            f"{train_cfg.grad_accum_steps * batch // smaller}) to keep the global batch, or "
            "use --amp.")


def _log_fine_tuning_start(model, init_checkpoint, restored, frozen):
    """One line: loaded / skipped / frozen counts (and batch-norm layers in inference mode)."""
    if restored is None:
        loaded = "no --init_checkpoint"
    else:
        loaded = (f"loaded {restored.loaded}, skipped {len(restored.skipped)} (other shapes), "
                  f"missing {len(restored.missing)} of {len(model.weights)} variables from "
                  f"{init_checkpoint}")
    logging.info("Fine-tuning start: %s; %s.", loaded, frozen.summary())


def _distributed(distribution, make_dataset):
    return lambda *args: distribution.distribute_dataset(make_dataset(*args))


def _evaluate_with_ema(experiment, model, ema, config, max_steps, results_json, preview=None):
    dataset = experiment.eval_dataset(config.eval.batch_size)
    if ema is not None and config.eval.use_ema:
        with ema.averaged_weights():
            return experiment.evaluate(model, dataset, max_steps, results_json, preview)
    return experiment.evaluate(model, dataset, max_steps, results_json, preview)


def evaluate(config, options=None, distribution=None):
    """Evaluates the latest (or ``options.checkpoint_path``) checkpoint; EMA weights by default.

    Returns:
        The metrics dict (also written to ``model_dir/eval_results.json``).
    """
    options = options or RunOptions()
    distribution = distribution or SingleProcess()
    val_files = check_file_pattern(config.data.val_file_pattern, "val_file_pattern")
    path = options.checkpoint_path or config.runtime.model_dir
    if not path:
        raise ConfigError("Nothing to evaluate: pass --model_dir (or --ckpt_path).")
    _check_records(config, val_files)
    results_json = None
    if config.runtime.model_dir and distribution.is_chief:
        # Checked before the (long) evaluation, not when the results are written.
        prepare_model_dir(config.runtime.model_dir)
    _apply_policy(config)
    experiment = family_of(config.model.name).make_experiment(config, distribution)
    model = build_network(config)
    restore_for_inference(model, path, use_ema=config.eval.use_ema)
    if config.runtime.model_dir and distribution.is_chief:
        results_json = os.path.join(config.runtime.model_dir, "detections.json") \
            if experiment.primary_metric == "AP" else None
    with _user_errors(config, val_files, training=False):
        metrics = experiment.evaluate(model, experiment.eval_dataset(config.eval.batch_size),
                                      options.eval_steps, results_json)
    if config.runtime.model_dir and distribution.is_chief:
        with atomic_write(os.path.join(config.runtime.model_dir, "eval_results.json")) as handle:
            json.dump(metrics, handle, indent=2)
    return metrics

