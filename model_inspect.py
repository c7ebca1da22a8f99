"""Inspect a model: parameter and multiply-add counts (``--runmode stats``).

    python model_inspect.py --runmode stats --model_name efficientdet-d0
    python model_inspect.py --runmode stats --model_name efficientnetv2-s --hparams image_size=384

Export, inference and benchmark run modes are added by the export work.
"""
import json
import sys

from absl import app, flags, logging

from common.config import ConfigError, build_network, load_config

FLAGS = flags.FLAGS
flags.DEFINE_enum("runmode", "stats", ["stats"], "What to do.")
flags.DEFINE_string("model_name", "efficientdet-d0", "Model to inspect.")
flags.DEFINE_string("config", None, "Optional YAML recipe from configs/.")
flags.DEFINE_string("hparams", None, "Comma-separated overrides, e.g. 'image_size=640x384'.")
flags.DEFINE_string("output_json", None, "Also write the numbers to this JSON file.")


def model_stats(config):
    """Returns a dict of parameter and multiply-add counts for ``config``'s network."""
    from common.model_stats import count_multiply_adds, count_parameters

    model = build_network(config)
    trainable, non_trainable = count_parameters(model)
    image_size = tuple(config.model.image_size)
    return {
        "model_name": config.model.name,
        "image_size": list(image_size),
        "num_classes": config.model.num_classes,
        "trainable_parameters": trainable,
        "non_trainable_parameters": non_trainable,
        "total_parameters": trainable + non_trainable,
        "multiply_adds": count_multiply_adds(model, image_size),
        "multiply_adds_convention": "conv + dense multiply-adds per image, inference mode",
    }


def main(argv):
    try:
        config = load_config(FLAGS.config, FLAGS.model_name, FLAGS.hparams)
    except ConfigError as error:
        logging.error("%s", error)
        sys.exit(2)
    stats = model_stats(config)
    width = max(len(k) for k in stats)
    for key, value in stats.items():
        shown = f"{value:,}" if isinstance(value, int) else value
        print(f"{key:<{width}}  {shown}")
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as handle:
            json.dump(stats, handle, indent=2)


if __name__ == "__main__":
    app.run(main)
