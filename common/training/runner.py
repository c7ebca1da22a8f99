"""Runs train / eval from an ExperimentConfig: the public entry points.

``main.py`` parses flags into a config and calls :func:`train` or
:func:`evaluate`; tests call them directly. The pieces live in their own
modules: pre-flight checks in :mod:`common.training.preflight`, the model /
optimizer / EMA / train step / checkpoint state in :mod:`common.training.setup`,
error translation in :mod:`common.training.user_errors`; this module wires
them to the logger, the evaluation and the epoch loop (or the benchmark).
"""
import dataclasses
import json
import os
import random

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from common.atomic_files import atomic_directory, atomic_write, write_text
from common.checkpoints import restore_for_inference
from common.config import ConfigError, build_network, dump_config
from common.export.label_map import (MODEL_DIR_LABEL_MAP, LabelMapError, label_map_json,
                                     run_label_map)
from common.layers.batch_norm_folding import fold_batch_norms
from common.training.checkpoints import remove_stale_checkpoint_files
from common.training.determinism import configure_determinism
from common.training.distribution import SingleProcess
from common.training.logger import MetricLogger
from common.training.loop import TrainingLoop
from common.training.preflight import check_file_pattern, check_training_run, prepare_model_dir
from common.training.setup import build_training_setup
from common.training.user_errors import user_errors as _user_errors


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


def _apply_policy(config):
    keras.mixed_precision.set_global_policy(config.runtime.policy)


def train(config, options=None, distribution=None):
    """Trains (and, with ``options.eval_during_training``, evaluates) per ``config``.

    Pre-flight checks (:func:`common.training.preflight.check_training_run`),
    then the training objects (:func:`common.training.setup.build_training_setup`),
    then the epoch loop, or the benchmark with ``options.benchmark_steps``.

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
    family = config.family
    experiment = family.make_experiment(config, distribution)
    found = check_training_run(config, options, distribution, experiment.records)
    class_names, names_from = _class_names(config)
    if distribution.is_chief:
        remove_stale_checkpoint_files(runtime.model_dir)
        if not found.resuming and not options.benchmark_steps:
            dump_config(config, os.path.join(runtime.model_dir, "config.yaml"))
        if class_names and runtime.model_dir and not options.benchmark_steps:
            # The model directory carries its class names (infer, evaluation tables).
            path = os.path.join(runtime.model_dir, MODEL_DIR_LABEL_MAP)
            if os.path.abspath(names_from) != os.path.abspath(path):
                write_text(path, label_map_json(class_names))
                logging.info("Class names from %s written to %s", names_from, path)

    configure_determinism(runtime.deterministic)
    set_seed(train_cfg.seed)
    _apply_policy(config)
    setup = build_training_setup(
        config, distribution, experiment.task, init_checkpoint=options.init_checkpoint,
        resume_from=found.latest_checkpoint if found.resuming else None,
        train_files=found.train_files, records=experiment.records)

    logger = MetricLogger(runtime.model_dir, distribution.is_chief)
    logger.metadata({"model_name": config.model.name, "global_batch_size": setup.global_batch,
                     "steps_per_epoch": setup.steps_per_epoch,
                     "num_epochs": train_cfg.num_epochs, "replicas": distribution.size,
                     "precision": runtime.policy, "use_xla": runtime.use_xla,
                     "grad_accum_steps": train_cfg.grad_accum_steps})
    evaluate_fn = None
    if options.eval_during_training:
        evaluate_fn = _evaluate_during_training(config, options, distribution, experiment,
                                                setup, logger)
    loop = TrainingLoop(setup.step, setup.state, logger, setup.steps_per_epoch,
                        setup.global_batch, learning_rate_fn=setup.schedule,
                        log_every_n_steps=min(runtime.log_every_n_steps, setup.steps_per_epoch),
                        save_every_n_epochs=options.save_every_n_epochs,
                        evaluate_fn=evaluate_fn,
                        eval_every_n_epochs=config.eval.every_n_epochs,
                        primary_metric=family.primary_metric, amp=runtime.loss_scaling,
                        save_every_n_steps=runtime.checkpoint_every_n_steps,
                        batches_per_step=setup.batches_per_step,
                        advice=_divergence_advice(config))
    experiment_stages = experiment.stages(
        setup.model, train_cfg.num_epochs, train_cfg.batch_size, train_cfg.seed,
        batches_per_epoch=setup.steps_per_epoch * setup.batches_per_step)
    stages = [
        dataclasses.replace(stage, make_dataset=_distributed(distribution, stage.make_dataset))
        for stage in experiment_stages]
    result = {"model_dir": runtime.model_dir, "steps_per_epoch": setup.steps_per_epoch}
    try:
        if options.benchmark_steps:
            result["benchmark_images_per_second"] = _benchmark(
                loop, stages[-1], experiment_stages[-1], distribution, options.benchmark_steps,
                setup.global_batch)
        else:
            with _user_errors(config, found.data_files, experiment.records):
                loop.run(stages, train_cfg.num_epochs)
    finally:
        logger.close()
    result.update(steps=setup.state.step, epochs=int(setup.state.epoch.numpy()),
                  history=loop.history, eval=loop.last_eval, model=setup.model, ema=setup.ema)
    return result


def _evaluate_during_training(config, options, distribution, experiment, setup, logger):
    """``epoch -> metrics``: the loop's evaluation (EMA weights when ``eval.use_ema``)."""
    model, ema, runtime = setup.model, setup.ema, config.runtime

    def evaluate_fn(epoch):
        # Batch-norm statistics follow each replica's own data: every process
        # evaluates with the chief's, which are the ones in the checkpoint.
        distribution.broadcast_variables(list(model.non_trainable_weights)
                                         + (list(ema.shadows) if ema else []))
        results_json = os.path.join(runtime.model_dir, f"eval_epoch{epoch}.json") \
            if distribution.is_chief else None
        preview = None
        if distribution.is_chief and runtime.model_dir and config.eval.num_pictures:
            step_now = int(setup.step.global_step.numpy())

            def preview(pictures):
                logger.images(step_now, "eval/examples", pictures)
                write_eval_pictures(runtime.model_dir, pictures, f"epoch {epoch}")

        return _evaluate_with_ema(experiment, model, ema, config, options.eval_steps,
                                  results_json, preview)

    return evaluate_fn


def _benchmark(loop, stage, experiment_stage, distribution, steps, global_batch):
    """Images/second of ``steps`` train steps on the last stage's data (after warm-up)."""
    if stage.on_enter is not None:
        stage.on_enter()
    # Timing needs an endless stream, whatever the run's length.
    iterator = iter(distribution.distribute_dataset(experiment_stage.make_dataset().repeat()))
    warmup = max(2, steps // 5)
    speed = loop.benchmark(iterator, steps, warmup)
    logging.info("Benchmark: %.2f images/second (global batch %d, %d steps after %d warm-up)",
                 speed, global_batch, steps, warmup)
    return speed


def _divergence_advice(config):
    """``kind -> str``: what to change when the loss diverges, for this run's settings."""
    train_cfg = config.train

    def advice(kind):
        lr = f"train.learning_rate={train_cfg.learning_rate:g}"
        lower = f"--override train.learning_rate={train_cfg.learning_rate / 10:g}"
        if kind == "nan" and config.runtime.loss_scaling:
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


def _distributed(distribution, make_dataset):
    return lambda *args: distribution.distribute_dataset(make_dataset(*args))


def _class_names(config):
    """``({id: name}, source)`` of the run (see ``run_label_map``); a bad
    ``data.label_map`` is a ConfigError."""
    try:
        return run_label_map(config, first_id=1 if config.family.outputs_boxes else 0)
    except (OSError, LabelMapError) as error:
        raise ConfigError(f"data.label_map: {error}") from None


EVAL_PICTURES = "eval_pictures"


def write_eval_pictures(model_dir, pictures, what):
    """Replaces ``model_dir/eval_pictures/`` with ``pictures`` (uint8 ``[N, H, W, 3]``)
    as ``val_000.png`` …, all or nothing; logs where they are.

    ``what``: the evaluated weights, for the log line (``epoch 8``, a checkpoint).
    """
    from PIL import Image

    path = os.path.join(model_dir, EVAL_PICTURES)
    with atomic_directory(path) as folder:
        os.makedirs(folder)
        for index, picture in enumerate(pictures):
            Image.fromarray(np.asarray(picture, np.uint8)).save(
                os.path.join(folder, f"val_{index:03d}.png"))
    logging.info("Wrote %d validation pictures of %s (ground truth left, detections right) to %s",
                 len(pictures), what, path)
    return path


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
    family = config.family
    experiment = family.make_experiment(config, distribution)
    experiment.records.check(val_files)
    _class_names(config)  # a bad data.label_map fails before the evaluation
    results_json = None
    if config.runtime.model_dir and distribution.is_chief:
        # Checked before the (long) evaluation, not when the results are written.
        prepare_model_dir(config.runtime.model_dir)
    _apply_policy(config)
    model = build_network(config)
    restore_for_inference(model, path, use_ema=config.eval.use_ema)
    if config.eval.fold_batch_norm:
        fold_batch_norms(model)
    if config.runtime.model_dir and distribution.is_chief:
        results_json = os.path.join(config.runtime.model_dir, family.results_file) \
            if family.results_file else None
    preview = None
    if config.runtime.model_dir and distribution.is_chief and config.eval.num_pictures:
        preview = lambda pictures: write_eval_pictures(  # noqa: E731
            config.runtime.model_dir, pictures, os.path.basename(os.path.normpath(path)))
    with _user_errors(config, val_files, experiment.records, training=False):
        metrics = experiment.evaluate(model, experiment.eval_dataset(config.eval.batch_size),
                                      options.eval_steps, results_json, preview)
    if config.runtime.model_dir and distribution.is_chief:
        with atomic_write(os.path.join(config.runtime.model_dir, "eval_results.json")) as handle:
            json.dump(metrics, handle, indent=2)
    return metrics

