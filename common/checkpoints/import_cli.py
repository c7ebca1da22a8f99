"""Command line of the convert-once tool (``python -m efficientdet.import_checkpoint`` /
``python -m efficientnet_v2.import_checkpoint``); see :mod:`common.checkpoints.convert`.

    python -m efficientdet.import_checkpoint --model_name efficientdet-d0 \
        --ckpt efficientdet-d0/ --output_dir ckpts/d0-voc --num_classes 20 --skip_mismatch

Exit codes: 0 converted, 2 a user error (message on stderr, nothing written).
"""
import argparse
import sys

from absl import logging

from common.checkpoints.convert import convert_official_checkpoint
from common.checkpoints.official import CheckpointError
from common.config import ConfigError, load_config


def build_parser(prog, default_model_name):
    """The argument parser; ``default_model_name`` is the entry point's family default."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Convert an official google/automl checkpoint (EfficientDet detector, "
                    "backbone-only EfficientNet, or EfficientNetV2 classifier) once into this "
                    "project's checkpoint format, for main.py --init_checkpoint and "
                    "model_inspect.py --ckpt_path.")
    parser.add_argument("--model_name", default=default_model_name,
                        help=f"Model to import into (default {default_model_name}).")
    parser.add_argument("--ckpt", required=True,
                        help="Official checkpoint: an unpacked release directory or a prefix "
                             "such as 'efficientdet-d0/model'.")
    parser.add_argument("--output_dir", required=True,
                        help="New directory for the converted checkpoint, config.yaml and "
                             "import_summary.json.")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="Classes of the target model (default: the model's preset, "
                             "90 for EfficientDet, 1000 for classifiers); the class head is "
                             "re-initialized when it differs (needs --skip_mismatch).")
    parser.add_argument("--config", default=None,
                        help="Optional YAML recipe (e.g. configs/efficientdet-d0-voc.yaml) "
                             "to take the model settings from.")
    parser.add_argument("--hparams", default=None,
                        help="Comma-separated config overrides, as in main.py.")
    parser.add_argument("--use_ema", dest="use_ema", action="store_true", default=True,
                        help="Import the moving-average weights (default).")
    parser.add_argument("--no_use_ema", dest="use_ema", action="store_false",
                        help="Import the raw weights instead of the moving averages.")
    parser.add_argument("--skip_mismatch", action="store_true",
                        help="Re-initialize layers whose shape differs (another number of "
                             "classes) instead of failing.")
    return parser


def main(argv=None, prog=None, default_model_name="efficientdet-d0"):
    """Runs the tool; returns the exit code (0 ok, 2 user error)."""
    args = build_parser(prog, default_model_name).parse_args(argv)
    logging.set_verbosity(logging.INFO)
    overrides = [] if args.num_classes is None else [f"model.num_classes={args.num_classes}"]
    try:
        config = load_config(args.config, args.model_name, args.hparams, overrides)
        result = convert_official_checkpoint(config, args.ckpt, args.output_dir,
                                             use_ema=args.use_ema,
                                             skip_mismatch=args.skip_mismatch)
    except (ConfigError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result.report.summary())
    print(f"Converted checkpoint: {result.checkpoint}")
    print(f"Config: {result.config_path}   Summary: {result.summary_path}")
    print(f"Use it with: main.py --init_checkpoint {args.output_dir}  or  "
          f"model_inspect.py --config {result.config_path} --ckpt_path {args.output_dir}")
    return 0
