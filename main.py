"""Command-line entry point for EfficientDet and EfficientNetV2 jobs.

    python main.py --mode summary --model_name efficientdet-d0
    python main.py --mode summary --config configs/efficientnetv2-s-imagenet.yaml \
        --hparams num_classes=10,image_size=256

Modes available now: ``summary`` (build the network, print its layers and
parameter counts, and write the resolved config to ``--model_dir``).
"""
import os
import sys

from absl import app, flags, logging

from common.config import ConfigError, build_network, dump_config, load_config

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "summary", ["summary"], "What to run.")
flags.DEFINE_string("model_name", None, "e.g. efficientdet-d0, efficientnetv2-s (overrides the config).")
flags.DEFINE_string("config", None, "YAML recipe from configs/.")
flags.DEFINE_string("hparams", None, "Comma-separated overrides, e.g. 'num_classes=20,train.batch_size=4'.")
flags.DEFINE_multi_string("override", [], "One override key=value; repeatable.")
flags.DEFINE_string("model_dir", None, "Output directory; the resolved config is written there.")
flags.DEFINE_bool("amp", None, "Use the mixed_float16 policy (overrides runtime.mixed_precision).")


def resolve_config(argv_overrides=()):
    overrides = list(FLAGS.override) + list(argv_overrides)
    if FLAGS.model_dir:
        overrides.append(f"runtime.model_dir={FLAGS.model_dir}")
    if FLAGS.amp is not None:
        overrides.append(f"runtime.mixed_precision={FLAGS.amp}")
    return load_config(FLAGS.config, FLAGS.model_name, FLAGS.hparams, overrides)


def run_summary(config):
    import keras

    from common.model_stats import count_parameters

    if config.runtime.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    model = build_network(config)
    model.summary(expand_nested=False, print_fn=lambda line, **_: print(line))
    trainable, non_trainable = count_parameters(model)
    print(f"{config.model.name}: {trainable:,} trainable + {non_trainable:,} non-trainable "
          f"= {trainable + non_trainable:,} parameters at "
          f"{config.model.image_size[0]}x{config.model.image_size[1]}, "
          f"{config.model.num_classes} classes")


def main(argv):
    try:
        config = resolve_config()
    except ConfigError as error:
        logging.error("%s", error)
        sys.exit(2)
    if config.runtime.model_dir:
        os.makedirs(config.runtime.model_dir, exist_ok=True)
        path = os.path.join(config.runtime.model_dir, "config.yaml")
        dump_config(config, path)
        logging.info("Resolved config written to %s", path)
    if FLAGS.mode == "summary":
        run_summary(config)


if __name__ == "__main__":
    app.run(main)
