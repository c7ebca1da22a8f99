"""Checks run before anything is built or trained: settings, model directory, data.

Every problem found here is one :class:`~common.config.ConfigError` naming the
setting or flag to change, raised before a model is built (minutes before the
first step on a large model).
"""
import dataclasses
import os
import tempfile

import numpy as np
import tensorflow as tf

from common.config import ConfigError


@dataclasses.dataclass
class TrainingPreflight:
    """What :func:`check_training_run` found.

    Attributes:
        train_files: the sorted training record files.
        data_files: every record file the run reads (training, plus validation
            when evaluating during training): named when one turns out unreadable.
        latest_checkpoint: the newest checkpoint prefix in the model directory, or None.
        resuming: the run continues ``latest_checkpoint`` (``--resume`` and one exists).
    """

    train_files: list
    data_files: list
    latest_checkpoint: str | None
    resuming: bool


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


def check_training_run(config, options, distribution, records):
    """All pre-flight checks of a training run, in the order a user fixes them.

    Creates the model directory (it must be writable); writes nothing else.

    Args:
        config: the ExperimentConfig.
        options: the run's ``RunOptions`` (``resume``, ``benchmark_steps``,
            ``eval_during_training`` are read).
        distribution: the distribution hook (replica count, batch-norm sync).
        records: the experiment's record checks; ``check(files)`` reads the first
            record of every file (readable, of the family's kind).

    Returns:
        A :class:`TrainingPreflight`.

    Raises:
        ConfigError: the first problem found.
    """
    runtime = config.runtime
    _check_distribution(runtime, distribution)
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
    records.check(train_files)
    return TrainingPreflight(train_files=train_files, data_files=data_files,
                             latest_checkpoint=latest,
                             resuming=bool(options.resume and latest is not None))


def _check_distribution(runtime, distribution):
    """Settings this distribution cannot honour."""
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
