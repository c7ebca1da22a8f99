"""Train, evaluate or inspect EfficientDet and EfficientNetV2 models.

    python main.py --mode train_and_eval                      # quickstart on the built-in sample data
    python main.py --mode train --config configs/efficientdet-d0-coco.yaml --model_dir runs/d0
    python main.py --mode eval --model_dir runs/d0 --val_file_pattern 'data/coco/val-*'
    python main.py --mode summary --model_name efficientnetv2-s
    python main.py --mode train_and_eval --config configs/efficientdet-d0-voc.yaml \
        --init_checkpoint ckpts/d0-voc --freeze backbone --model_dir runs/d0-voc   # fine-tune
    horovodrun -np 8 python main.py --mode train --config ... --model_dir runs/d0   # 8 GPUs

Precedence of settings: defaults < model presets < --config YAML < --hparams <
--override < the dedicated flags below (--batch_size, --num_epochs, ...).
"""
import dataclasses
import os
import sys
import time

from absl import app, flags, logging

import model_zoo  # noqa: F401  (registers the model families)
from common.checkpoints import CheckpointError
from common.config import ConfigError, build_network, dump_config, load_config
from common.config.schema import PRECISIONS

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "train_and_eval", ["train", "eval", "train_and_eval", "summary"],
                  "What to run.")
flags.DEFINE_string("model_name", None, "e.g. efficientdet-d0, efficientnetv2-s (overrides the config).")
flags.DEFINE_string("config", None, "YAML recipe from configs/.")
flags.DEFINE_string("hparams", None, "Comma-separated overrides, e.g. 'num_classes=20,train.batch_size=4'.")
flags.DEFINE_multi_string("override", [], "One override key=value; repeatable.")
flags.DEFINE_string("model_dir", None, "Checkpoints, logs and the resolved config go here.")
flags.DEFINE_string("train_file_pattern", None, "Glob of training TFRecords.")
flags.DEFINE_string("val_file_pattern", None, "Glob of evaluation TFRecords.")
flags.DEFINE_string("val_json_file", None, "COCO ground-truth JSON (default: built from the records).")
flags.DEFINE_integer("batch_size", None, "Per-replica batch size.")
flags.DEFINE_integer("num_epochs", None, "Training epochs.")
flags.DEFINE_integer("steps_per_epoch", None, "Optimizer steps per epoch (default: dataset size).")
flags.DEFINE_integer("grad_accum_steps", None, "Micro-batches per optimizer step.")
flags.DEFINE_string("init_checkpoint", None,
                    "Initial weights: an official google/automl checkpoint (detector, backbone or "
                    "classifier) or one of ours; layers with other shapes are re-initialized.")
flags.DEFINE_string("freeze", None,
                    "Fine-tuning: keep these variables fixed (train.freeze). 'backbone' "
                    "(classifiers: all but the classification layer), 'backbone+bifpn' "
                    "(detectors: only the heads train), 're:<regex>' over variable paths "
                    "(e.g. 're:efficientnet-b0/blocks_[0-3]/'), or 'none'.")
flags.DEFINE_string("ckpt_path", None, "Checkpoint to evaluate (default: latest in --model_dir).")
flags.DEFINE_bool("resume", False, "Continue from the latest checkpoint in --model_dir, with "
                  "the recipe recorded in its config.yaml.")
flags.DEFINE_integer("seed", None, "Random seed.")
flags.DEFINE_bool("deterministic", None,
                  "Bit-identical runs for one seed on CPU (slower; README: Resuming and failures).")
flags.DEFINE_integer("checkpoint_every_n_steps", None,
                     "Also checkpoint every N steps inside epochs (default: epoch ends only).")
flags.DEFINE_bool("use_xla", None, "Compile the train step with XLA.")
flags.DEFINE_bool("amp", None, "Mixed precision (mixed_float16 + dynamic loss scaling); "
                  "the float16 shortcut of --precision.")
flags.DEFINE_enum("precision", None, list(PRECISIONS),
                  "Compute dtype policy (variables stay float32). mixed_bfloat16 needs no loss "
                  "scaling: for Ampere+/Hopper GPUs, TPUs and CPUs with AVX512_BF16/AMX.")
flags.DEFINE_integer("eval_steps", None, "Evaluate on at most this many batches.")
flags.DEFINE_bool("benchmark", False, "Time --benchmark_steps train steps and print images/second.")
flags.DEFINE_integer("benchmark_steps", 30, "Timed steps of --benchmark (after warm-up).")
flags.DEFINE_enum("strategy", "auto", ["auto", "default", "horovod", "mirrored", "multi_worker"],
                  "Distribution: auto = horovod under horovodrun, else one process; "
                  "mirrored = all GPUs of this machine (tf.distribute); "
                  "multi_worker = cluster from TF_CONFIG.")
flags.DEFINE_bool("fp16_allreduce", False, "Horovod: send gradients as float16.")
flags.DEFINE_bool("sync_bn", None, "Synchronized batch norm across replicas (tf.distribute only).")
flags.DEFINE_string("sample_data_dir", os.path.join(os.path.expanduser("~"), ".cache",
                                                    "effdet-v2-toolkit", "sample_data"),
                    "Where the built-in sample dataset is generated when no data is given.")

QUICKSTART = {
    "detection": os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs",
                              "quickstart-detection.yaml"),
    "classification": os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs",
                                   "quickstart-classification.yaml"),
}


def _flag_overrides():
    mapping = {
        "model_dir": "runtime.model_dir",
        "train_file_pattern": "data.train_file_pattern",
        "val_file_pattern": "data.val_file_pattern",
        "val_json_file": "data.val_json_file",
        "batch_size": "train.batch_size",
        "num_epochs": "train.num_epochs",
        "steps_per_epoch": "train.steps_per_epoch",
        "grad_accum_steps": "train.grad_accum_steps",
        "seed": "train.seed",
        "use_xla": "runtime.use_xla",
        "amp": "runtime.mixed_precision",
        "precision": "runtime.precision",
        "sync_bn": "runtime.sync_bn",
        "deterministic": "runtime.deterministic",
        "checkpoint_every_n_steps": "runtime.checkpoint_every_n_steps",
    }
    overrides = []
    for flag, key in mapping.items():
        value = getattr(FLAGS, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if FLAGS.amp is False and FLAGS.precision is None:
        # --noamp also turns off a recipe's runtime.precision=mixed_float16.
        overrides.append("runtime.precision=float32")
    if FLAGS.freeze is not None:
        # Quoted so YAML keeps a regular expression verbatim (':', '#', brackets).
        overrides.append("train.freeze='" + FLAGS.freeze.replace("'", "''") + "'")
    return overrides


def _recorded_config():
    """``model_dir/config.yaml`` when this run continues a model directory's recipe
    (``--resume``, or evaluating a model directory), else None."""
    if not FLAGS.model_dir:
        return None
    path = os.path.join(FLAGS.model_dir, "config.yaml")
    if not os.path.isfile(path):
        if FLAGS.resume:
            logging.warning("%s is missing: resuming with the settings of the command line only.",
                            path)
        return None
    if FLAGS.resume or FLAGS.mode == "eval":
        return path
    return None


def _check_resume_target():
    """``--resume`` needs a checkpoint in ``--model_dir`` (checked before anything is written)."""
    if FLAGS.mode not in ("train", "train_and_eval") or not FLAGS.resume:
        return
    import tensorflow as tf

    if not FLAGS.model_dir:
        raise ConfigError("--resume needs --model_dir: the directory of the run to continue.")
    if not os.path.isdir(FLAGS.model_dir):
        raise ConfigError(f"--resume: --model_dir {FLAGS.model_dir!r} does not exist; check the "
                          "path, or drop --resume to start a new run there.")
    if tf.train.latest_checkpoint(FLAGS.model_dir) is None:
        raise ConfigError(f"--resume: no checkpoint in {FLAGS.model_dir!r} (no 'checkpoint' file "
                          "listing ckpt-<step>); check --model_dir, or drop --resume to start a "
                          "new run there.")


def _config_from_model_dir(path, overrides):
    """The recorded recipe at ``path`` with the command line on top (checked, logged)."""
    from common.config import load_config_file
    from common.config.resume import EVAL_ALLOWED, check_changes, describe_changes

    base = load_config_file(path)
    try:
        recorded = load_config(base=base)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    config = load_config(FLAGS.config, FLAGS.model_name, FLAGS.hparams, overrides, base=base)
    if FLAGS.mode == "eval":
        changes = check_changes(recorded, config, path, EVAL_ALLOWED, "evaluate")
    else:
        changes = check_changes(recorded, config, path)
    logging.info("Using the recipe recorded in %s%s", path,
                 f"; changed on the command line: {describe_changes(changes)}" if changes else
                 " unchanged.")
    return config


def resolve_config(distribution=None):
    """Config from flags; with no data anywhere, the quickstart recipe on sample data
    (written by one process per machine while the others wait). A resumed run (and
    evaluation of a model directory) starts from the directory's ``config.yaml``.

    Each recipe is loaded once: the flags' config, and only when it names no data
    and no ``--config``, the quickstart recipe of its task (another file); the
    sample data then goes into that loaded config (it tops every other setting).
    """
    overrides = list(FLAGS.override) + _flag_overrides()
    recorded = _recorded_config()
    if recorded is not None:
        return _config_from_model_dir(recorded, overrides)
    config = load_config(FLAGS.config, FLAGS.model_name, FLAGS.hparams, overrides)
    if FLAGS.mode == "summary" or config.data.train_file_pattern or config.data.val_file_pattern:
        return config
    from dataset.make_sample_dataset import make_sample_datasets

    config_file = FLAGS.config or QUICKSTART[config.task]
    if not FLAGS.config:
        # The quickstart recipe of the task, with the command line on top.
        config = load_config(config_file, FLAGS.model_name, FLAGS.hparams, overrides)
    image_size = max(64, max(config.model.image_size))
    # Local rank 0 writes the files; the other processes wait, then find them.
    writer = distribution is None or distribution.local_rank == 0
    if not writer:
        distribution.barrier()
    sample = make_sample_datasets(FLAGS.sample_data_dir, image_size=image_size)
    if writer and distribution is not None:
        distribution.barrier()
    logging.info("No data given: using the built-in sample dataset in %s with %s",
                 FLAGS.sample_data_dir, config_file)
    return _with_sample_data(config, sample)


def _with_sample_data(config, sample):
    """``config`` reading the sample dataset ``sample`` (of ``make_sample_datasets``).

    The same as loading the recipe again with these settings as the last
    overrides, without reading and resolving it a second time.
    """
    prefix = "" if config.task == "detection" else "classification_"
    data = {"train_file_pattern": sample[prefix + "train_file_pattern"],
            "val_file_pattern": sample[prefix + "val_file_pattern"]}
    if config.task == "detection":
        data["val_json_file"] = sample["val_json"]
    return dataclasses.replace(
        config, data=_replaced(config.data, **data),
        model=_replaced(config.model, num_classes=int(sample[prefix + "num_classes"])))


def _replaced(section, **values):
    """``dataclasses.replace`` plus the section's own validation (as loading does)."""
    section = dataclasses.replace(section, **values)
    validate = getattr(section, "validate", None)
    if validate is not None:
        validate()
    return section


def run_summary(config):
    import keras

    from common.model_stats import count_parameters

    keras.mixed_precision.set_global_policy(config.runtime.policy)
    model = build_network(config)
    model.summary(expand_nested=False, print_fn=lambda line, **_: print(line))
    trainable, non_trainable = count_parameters(model)
    print(f"{config.model.name}: {trainable:,} trainable + {non_trainable:,} non-trainable "
          f"= {trainable + non_trainable:,} parameters at "
          f"{config.model.image_size[0]}x{config.model.image_size[1]}, "
          f"{config.model.num_classes} classes")


def run(config, distribution):
    from common.training.loop import TrainingDivergedError
    from common.training.runner import RunOptions, evaluate, train

    options = RunOptions(init_checkpoint=FLAGS.init_checkpoint, resume=FLAGS.resume,
                         eval_during_training=FLAGS.mode == "train_and_eval",
                         benchmark_steps=FLAGS.benchmark_steps if FLAGS.benchmark else 0,
                         eval_steps=FLAGS.eval_steps, checkpoint_path=FLAGS.ckpt_path)
    started = time.time()
    if FLAGS.mode == "eval":
        metrics = evaluate(config, options, distribution)
        if distribution.is_chief:
            _print_metrics(metrics)
            _print_pictures(config.runtime.model_dir, started)
        return
    try:
        result = train(config, options, distribution)
    except TrainingDivergedError as error:
        logging.error("%s", error)
        sys.exit(3)
    if not distribution.is_chief:
        return
    if FLAGS.benchmark:
        print(f"train throughput: {result['benchmark_images_per_second']:.2f} images/second")
    elif result["eval"] is not None:
        _print_metrics(result["eval"])
        _print_pictures(config.runtime.model_dir, started)


def _print_pictures(model_dir, started):
    """Where this run's evaluation pictures are, if it wrote any."""
    from common.training.runner import EVAL_PICTURES

    path = os.path.join(model_dir or "", EVAL_PICTURES)
    if model_dir and os.path.isdir(path) and os.path.getmtime(path) >= started - 1:
        count = len([n for n in os.listdir(path) if n.endswith(".png")])
        print(f"\n{count} validation pictures (ground truth left, detections right): {path}/")


def _print_metrics(metrics):
    """The metrics, then (detection) the per-class AP table, best class first."""
    per_class = {k[len("AP_/"):]: v for k, v in metrics.items() if k.startswith("AP_/")}
    for key, value in metrics.items():
        if key.startswith("AP_/"):
            continue
        if isinstance(value, float):
            print(f"{key:>24}: {value:.4f}")
        else:
            print(f"{key:>24}: {value}")
    if per_class:
        width = max(12, *(len(name) for name in per_class))
        print(f"\n{'class':<{width}}  AP (IoU 0.50:0.95; -1 = no ground truth)")
        for name, value in sorted(per_class.items(), key=lambda item: (-item[1], item[0])):
            print(f"{name:<{width}}  {value:.4f}")


def _check_positional(argv):
    """Leftover words on the command line are almost always a glob the shell expanded."""
    extra = argv[1:]
    if not extra:
        return
    shown = " ".join(repr(a) for a in extra[:3]) + (" ..." if len(extra) > 3 else "")
    raise ConfigError(
        f"Unexpected argument(s) {shown}: main.py takes only --flags. If these are files of "
        "a glob such as --train_file_pattern data/train-*, the shell expanded it and only "
        "the first file became the flag's value; quote the pattern: "
        "--train_file_pattern 'data/train-*'.")


def main(argv):
    from common.training.distribution import SingleProcess
    from common.training.distribution_factory import make_distribution
    from dataset.errors import DatasetError

    try:
        _check_positional(argv)
    except ConfigError as error:
        logging.error("%s", error)
        sys.exit(2)

    try:
        # First: Horovod must pick this process's GPU before TensorFlow touches any.
        distribution = SingleProcess() if FLAGS.mode == "summary" else make_distribution(
            FLAGS.strategy, FLAGS.fp16_allreduce)
    except (ValueError, ImportError) as error:
        logging.error("%s", error)
        sys.exit(2)
    if not distribution.is_chief:
        logging.set_verbosity(logging.WARNING)  # one copy of the logs, from the chief
    try:
        _check_resume_target()
        config = resolve_config(distribution)
        if FLAGS.mode == "summary":
            if config.runtime.model_dir:
                _write_summary_config(config)
            run_summary(config)
        else:
            run(config, distribution)
    except (ConfigError, CheckpointError, DatasetError) as error:
        logging.error("%s", error)
        sys.exit(2)


def _write_summary_config(config):
    """``--mode summary --model_dir`` records the config, but never over a trained run's."""
    from common.training.preflight import prepare_model_dir

    model_dir = config.runtime.model_dir
    prepare_model_dir(model_dir)
    if any(name.startswith("ckpt-") for name in os.listdir(model_dir)):
        logging.info("%s holds checkpoints: its config.yaml is left as it is.", model_dir)
        return
    dump_config(config, os.path.join(model_dir, "config.yaml"))


if __name__ == "__main__":
    app.run(main)
