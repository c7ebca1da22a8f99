"""Inspect, export, run and time a model (the flags automl's model_inspect.py users know).

    # parameters and multiply-adds
    python model_inspect.py --runmode stats --model_name efficientdet-d0
    # SavedModel: serving_default (uint8 [B,H,W,3], dynamic batch), serve_encoded, raw_outputs
    python model_inspect.py --runmode saved_model --model_name efficientdet-d0 \
        --ckpt_path efficientdet-d0/ --export_dir /tmp/d0_savedmodel
    # TFLite (builtin ops only), fp32 / fp16 / int8 (calibrated on --file_pattern TFRecords)
    python model_inspect.py --runmode tflite --quantize int8 --ckpt_path ... \
        --file_pattern 'data/val-*.tfrecord' --export_dir /tmp/d0_tflite
    # ONNX (tf2onnx; raw outputs unless --include_postprocess with hard NMS)
    python model_inspect.py --runmode onnx --ckpt_path ... --export_dir /tmp/d0_onnx
    # Keras .weights.h5 + config.yaml: the network on another Keras backend (KERAS_BACKEND=jax)
    python model_inspect.py --runmode keras_weights --ckpt_path ... --export_dir /tmp/d0_keras
    # annotated images
    python model_inspect.py --runmode infer --ckpt_path ... --input_image 'imgs/*.jpg' \
        --output_image_dir /tmp/out --min_score_thresh 0.4 --label_map coco
    # annotated video (needs: pip install opencv-python-headless)
    python model_inspect.py --runmode infer_video --ckpt_path ... --input_video in.mp4 \
        --output_video /tmp/out.mp4 --min_score_thresh 0.4
    # timings (network vs end to end; --benchmark_variants fp32,amp,xla,amp+xla)
    python model_inspect.py --runmode benchmark --batch_sizes 1,8 --output_json bench.json

``--saved_model_dir`` runs ``infer`` / ``infer_video`` / ``benchmark`` on an exported
SavedModel and ``--tflite_path`` runs them on a TFLite file instead of a
checkpoint (pictures are fitted to the file's size in NumPy and rounded to uint8;
the config, from ``--ckpt_path``'s model directory or ``--config``, gives the
pre-processing settings and class names).
TFLite and ONNX files take uint8 images of exactly the network size. A TFLite
file has a dynamic batch unless ``--batch_size`` is given; an int8 detector
always gets a static one (1 by default) so that its NMS is built without a
``WHILE`` loop (TensorFlow 2.18's int8 calibrator crashes on loops) and stays
in the file (see :mod:`common.export.tflite`).
Errors a user can cause (paths, images, configs, checkpoints, impossible
exports) end with one message and exit code 2. Output paths (``--export_dir``,
``--tflite_path``, ``--onnx_path``, ``--output_image_dir``, ``--output_video``,
``--output_json``) are checked before any model is built.
Every output is written under a hidden temporary name beside its destination
and moved into place only when complete (:mod:`common.atomic_files`): a failed
or killed run leaves an earlier export at the same path as it was.
"""
import json
import os
import sys

from absl import app, flags, logging

import model_zoo  # noqa: F401  (registers the model families)
from common.config import ConfigError, build_network, load_config

FLAGS = flags.FLAGS
RUNMODES = ["stats", "saved_model", "tflite", "onnx", "keras_weights", "infer", "infer_video",
            "benchmark"]
flags.DEFINE_enum("runmode", "stats", RUNMODES, "What to do.")
flags.DEFINE_string("model_name", None, "Model to inspect (default: the config's, else "
                    "efficientdet-d0).")
flags.DEFINE_string("config", None, "Optional YAML recipe from configs/.")
flags.DEFINE_string("hparams", None, "Comma-separated overrides, e.g. 'image_size=640x384'.")
flags.DEFINE_string("ckpt_path", None, "Training model dir / prefix (its config.yaml and class "
                    "names are used unless --config / --label_map are given), or an official "
                    "checkpoint.")
flags.DEFINE_bool("use_ema", True, "Load the moving-average weights when present.")
flags.DEFINE_bool("fold_batch_norm", True,
                  "Fold every batch norm into the conv before it (conv + bias; same outputs "
                  "within float rounding, faster). --nofold_batch_norm keeps them.")
flags.DEFINE_string("export_dir", None, "Output directory of saved_model / tflite / onnx / keras_weights.")
flags.DEFINE_string("saved_model_dir", None, "Run infer / benchmark on this exported SavedModel "
                    "(its config.yaml is used unless --config is given).")
flags.DEFINE_string("tflite_path", None, "tflite: output file; infer / infer_video / "
                    "benchmark: the TFLite file to run.")
flags.DEFINE_string("onnx_path", None, "onnx: output file (default EXPORT_DIR/MODEL.onnx).")
flags.DEFINE_enum("quantize", "none", ["none", "fp16", "int8"], "TFLite quantization.")
flags.DEFINE_bool("include_postprocess", None,
                  "Put NMS / softmax in the TFLite or ONNX file (default: TFLite yes, ONNX no).")
flags.DEFINE_string("file_pattern", None, "TFRecords for int8 calibration, e.g. 'val-*.tfrecord'.")
flags.DEFINE_integer("num_calibration_steps", 20, "Images used for int8 calibration.")
flags.DEFINE_string("input_image", None, "Image file or glob (infer; int8 calibration; benchmark).")
flags.DEFINE_string("output_image_dir", None, "infer: where annotated images are written.")
flags.DEFINE_string("input_video", None, "infer_video: video file to run the detector on.")
flags.DEFINE_string("output_video", None, "infer_video: annotated video (.mp4 or .avi).")
flags.DEFINE_string("label_map", None, "'coco' or a yaml / json / txt label map ({id: name} or "
                    "{name: id}); default: the --ckpt_path model directory's class names.")
flags.DEFINE_float("min_score_thresh", 0.4, "infer: smallest score drawn.")
flags.DEFINE_integer("max_boxes_to_draw", 100, "infer: most boxes drawn per image.")
flags.DEFINE_integer("batch_size", None,
                     "benchmark: a single batch size (overrides --batch_sizes); tflite: the "
                     "file's static batch size (default dynamic, int8 detectors 1).")
flags.DEFINE_string("batch_sizes", "1,8", "benchmark: comma-separated batch sizes.")
flags.DEFINE_integer("warmup_runs", 5, "benchmark: untimed calls per row.")
flags.DEFINE_integer("bench_runs", 20, "benchmark: timed calls per row.")
flags.DEFINE_integer("num_threads", None,
                     "TFLite file (benchmark, infer): interpreter threads (1 = one phone core, "
                     "0 = all cores; default: TFLite's).")
flags.DEFINE_bool("amp", False, "benchmark: mixed_float16 network.")
flags.DEFINE_bool("use_xla", False, "benchmark: XLA-compile the network.")
flags.DEFINE_string("benchmark_variants", None,
                    "benchmark: compare several of fp32,amp,xla,amp+xla "
                    "(overrides --amp / --use_xla).")
flags.DEFINE_string("output_json", None,
                    "Also write the results (stats, infer, benchmark, tflite).")


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


def _write_json(data):
    if FLAGS.output_json:
        from common.atomic_files import write_text

        write_text(FLAGS.output_json, json.dumps(data, indent=2))
        logging.info("Wrote %s", FLAGS.output_json)


def _module(config, mixed_precision=False):
    from common.export.factory import build_inference_module

    return build_inference_module(config, FLAGS.ckpt_path, FLAGS.use_ema, mixed_precision,
                                  fold_batch_norm=FLAGS.fold_batch_norm)


def _settings_module(config):
    """The config's wrapper for its pre- and post-processing only (no weights)."""
    from common.export.factory import build_inference_module

    return build_inference_module(config, settings_only=True)


def _require(flag_name):
    from common.export.errors import ExportError

    if not getattr(FLAGS, flag_name):
        raise ExportError(f"--runmode {FLAGS.runmode} needs --{flag_name}.")
    return getattr(FLAGS, flag_name)


def run_stats(config):
    stats = model_stats(config)
    width = max(len(k) for k in stats)
    for key, value in stats.items():
        shown = f"{value:,}" if isinstance(value, int) else value
        print(f"{key:<{width}}  {shown}")
    _write_json(stats)


def run_saved_model(config):
    from common.export.saved_model import export_saved_model

    export_dir = _require("export_dir")
    export_saved_model(_module(config), export_dir, config)
    print(f"SavedModel written to {export_dir} (signatures: serving_default [uint8 images], "
          "serve_encoded [JPEG/PNG strings], raw_outputs [normalized images])")


def run_keras_weights(config):
    from common.export.keras_weights import WEIGHTS_FILE, export_keras_weights

    export_dir = _require("export_dir")
    label_map = _label_map(config) if FLAGS.ckpt_path else {}
    export_keras_weights(config, FLAGS.ckpt_path, export_dir, FLAGS.use_ema, label_map)
    print(f"Keras weights written to {export_dir}/{WEIGHTS_FILE} with config.yaml"
          f"{' and label_map.json' if label_map else ''}: loads on every Keras backend "
          f"(e.g. KERAS_BACKEND=jax, Detector.from_checkpoint({export_dir!r})).")


def _default_path(config, extension, suffix=""):
    return os.path.join(_require("export_dir"), f"{config.model.name}{suffix}.{extension}")


def _tflite_output(config):
    """(path, flag that names it) of the TFLite file to write."""
    if FLAGS.tflite_path:
        return FLAGS.tflite_path, "--tflite_path"
    suffix = "" if FLAGS.quantize == "none" else f"_{FLAGS.quantize}"
    return _default_path(config, "tflite", suffix), "--export_dir"


def _onnx_output(config):
    """(path, flag that names it) of the ONNX file to write."""
    if FLAGS.onnx_path:
        return FLAGS.onnx_path, "--onnx_path"
    return _default_path(config, "onnx"), "--export_dir"


def _check_outputs(config):
    """Checks every path this run writes before any model is built.

    Raises:
        ExportError: an output that cannot be written (one message naming the
            path and the fix), or a missing output flag.
    """
    from common.export.outputs import check_output

    mode = FLAGS.runmode
    if mode == "saved_model":
        from common.export.saved_model import check_export_dir

        export_dir = _require("export_dir")
        check_output(export_dir, "--export_dir", directory=True)
        check_export_dir(export_dir)
    elif mode == "keras_weights":
        from common.export.keras_weights import check_export_dir

        export_dir = _require("export_dir")
        check_output(export_dir, "--export_dir", directory=True)
        check_export_dir(export_dir)
    elif mode == "tflite":
        check_output(*_tflite_output(config))
    elif mode == "onnx":
        check_output(*_onnx_output(config))
    elif mode == "infer":
        check_output(_require("output_image_dir"), "--output_image_dir", directory=True,
                     writes_inside=True)
    elif mode == "infer_video":
        from common.export.video import check_output_video

        output_video = _require("output_video")
        check_output_video(output_video)
        check_output(output_video, "--output_video")
    if FLAGS.output_json:
        check_output(FLAGS.output_json, "--output_json")


def run_tflite(config):
    from common.export import tflite

    path = _tflite_output(config)[0]
    samples = None
    if FLAGS.quantize == "int8":
        # Before the model is built, so that a pattern matching nothing fails at once.
        samples = tflite.representative_images(tuple(int(s) for s in config.model.image_size),
                                               FLAGS.file_pattern, FLAGS.input_image,
                                               FLAGS.num_calibration_steps)
    module = _module(config)
    include = True if FLAGS.include_postprocess is None else FLAGS.include_postprocess
    flatbuffer = tflite.convert_to_tflite(module, FLAGS.quantize, samples, include,
                                          batch_size=FLAGS.batch_size)
    batch = tflite.static_batch_size(module, FLAGS.quantize, include, FLAGS.batch_size)
    ops = tflite.op_counts(flatbuffer)
    print("ops: " + ", ".join(f"{name} x{count}" for name, count in sorted(ops.items())))
    non_builtin = sorted(op for op in ops if op.startswith(("CUSTOM", "Flex")))
    if non_builtin:  # checked before writing: an unusable file must not replace a good one
        raise tflite.ExportError(f"Non-builtin ops in the TFLite model: {non_builtin}; "
                                 f"nothing was written to {path}.")
    tflite.write_tflite(flatbuffer, path)
    print(f"TFLite ({FLAGS.quantize}) written to {path}: {len(flatbuffer) / 2**20:.2f} MiB, "
          f"batch size {batch or 'dynamic'}, "
          f"post-processing {'included' if include else 'NOT included (raw outputs)'}")
    _write_json({"path": path, "bytes": len(flatbuffer), "quantize": FLAGS.quantize,
                 "batch_size": batch, "include_postprocess": include,
                 "ops": dict(sorted(ops.items()))})


def run_onnx(config):
    from common.export.onnx_export import export_onnx

    include = bool(FLAGS.include_postprocess)
    path = export_onnx(_module(config), _onnx_output(config)[0], include)
    print(f"ONNX written to {path} ({os.path.getsize(path) / 2**20:.2f} MiB, "
          f"{'final' if include else 'raw'} outputs; input: uint8 images at the network size)")


def _tflite_threads():
    """--num_threads for the TFLite interpreter: None (its default), a count, 0 = all cores."""
    from common.export.errors import ExportError

    threads = FLAGS.num_threads
    if threads is not None and threads < 0:
        raise ExportError(f"--num_threads {threads}: give a count >= 1, or 0 for all cores.")
    return os.cpu_count() if threads == 0 else threads


def _predictor(config):
    from common.export.errors import ExportError
    from common.export.predictors import KerasPredictor, SavedModelPredictor, TFLitePredictor

    if FLAGS.saved_model_dir and FLAGS.tflite_path:
        raise ExportError("Give --saved_model_dir or --tflite_path, not both: which model to run?")
    if FLAGS.saved_model_dir:
        return SavedModelPredictor(FLAGS.saved_model_dir)
    if FLAGS.tflite_path:
        # The wrapper of the file's config fits pictures to the file's size and
        # post-processes a raw file; its network is not run.
        predictor = TFLitePredictor(FLAGS.tflite_path, num_threads=_tflite_threads())
        wrapper = _settings_module(config)
        if tuple(wrapper.image_size) != predictor.image_size or wrapper.task != predictor.task:
            raise ExportError(
                f"--tflite_path {FLAGS.tflite_path!r} is a {predictor.task} model for "
                f"{predictor.image_size[0]}x{predictor.image_size[1]} images, the config a "
                f"{wrapper.task} model for {wrapper.image_size[0]}x{wrapper.image_size[1]}: "
                f"pass the --ckpt_path (model directory) or --config the file was exported from.")
        predictor.postprocess_module = wrapper
        return predictor
    return KerasPredictor(_module(config))


def run_infer(config):
    from common.export.infer import annotate, load_inputs

    output_dir = _require("output_image_dir")
    label_map = _label_map(config)
    files, images = load_inputs(FLAGS.input_image)  # bad inputs fail before the model is built
    records = annotate(_predictor(config), files, images, output_dir, label_map,
                       FLAGS.min_score_thresh, FLAGS.max_boxes_to_draw)
    for record in records:
        print(f"{record['input']} -> {record['output']} ({record['drawn']} drawn)")
    _write_json(records)


def _label_map(config):
    """--label_map; else the class names the --ckpt_path model directory carries; else
    COCO's for a 90-class detector (the official checkpoints)."""
    from common.export.label_map import load_label_map, model_dir_label_map

    detection = config.task == "detection"
    if not FLAGS.label_map:
        names = model_dir_label_map(FLAGS.ckpt_path)
        if names:
            return names
    coco = detection and config.model.num_classes == 90
    return load_label_map(FLAGS.label_map or ("coco" if coco else None),
                          first_id=1 if detection else 0)


def run_infer_video(config):
    from common.export.video import annotate_video, import_cv2

    input_video, output_video = _require("input_video"), _require("output_video")
    import_cv2()  # a missing OpenCV fails before the model is built
    if not os.path.isfile(input_video):
        raise FileNotFoundError(f"--input_video {input_video!r} does not exist.")
    record = annotate_video(_predictor(config), input_video, output_video, _label_map(config),
                            FLAGS.min_score_thresh, FLAGS.max_boxes_to_draw)
    print(f"{record['input']} -> {record['output']}: {record['frames']} frames "
          f"{record['width']}x{record['height']}, {record['frames_per_second']:.2f} frames/second "
          f"end to end (decode + model + draw + encode), "
          f"{record['model_frames_per_second']:.2f} frames/second in the model")
    _write_json(record)


def run_benchmark(config):
    from common.export import benchmark, benchmark_targets
    from common.export.infer import list_images, read_image

    tflite_threads = _tflite_threads()
    batch_sizes = benchmark_targets.parse_batch_sizes(
        str(FLAGS.batch_size) if FLAGS.batch_size else FLAGS.batch_sizes)
    image = read_image(list_images(FLAGS.input_image)[0]) if FLAGS.input_image else None
    if FLAGS.tflite_path:
        post = _settings_module(config) if config.task == "detection" else None
        targets = benchmark_targets.tflite_targets(FLAGS.tflite_path, post,
                                                   num_threads=tflite_threads)
        fmt = "tflite"
    elif FLAGS.saved_model_dir:
        targets = benchmark_targets.saved_model_targets(FLAGS.saved_model_dir, image)
        fmt = "saved_model"
    else:
        if FLAGS.benchmark_variants:
            variants = benchmark_targets.parse_variants(FLAGS.benchmark_variants)
        else:
            variants = ["+".join(v for v, on in (("amp", FLAGS.amp), ("xla", FLAGS.use_xla)) if on)
                        or "fp32"]
        targets = benchmark_targets.keras_targets(lambda amp: _module(config, amp), variants, image)
        fmt = "keras"
    print("Methodology: " + benchmark.METHODOLOGY)
    results = benchmark.run_benchmarks(targets, batch_sizes, FLAGS.warmup_runs, FLAGS.bench_runs)
    print(benchmark.format_table(results))
    _write_json(benchmark.report(results, model_name=config.model.name, format=fmt,
                                 image_size=list(config.model.image_size),
                                 batch_sizes=batch_sizes, tflite_threads=tflite_threads,
                                 variant_definitions={
                                     r.variant: benchmark_targets.VARIANT_DEFINITIONS[r.variant]
                                     for r in results},
                                 checkpoint=FLAGS.ckpt_path or FLAGS.saved_model_dir
                                 or FLAGS.tflite_path))


def _user_errors():
    from common.checkpoints import CheckpointError
    from common.export.infer import ImageReadError
    from common.export.label_map import LabelMapError
    from common.export.errors import ExportError

    return (ConfigError, CheckpointError, ExportError, ImageReadError, LabelMapError,
            FileNotFoundError)


def _config_file():
    """--config, else the config.yaml written beside an exported SavedModel, else the
    one of the model directory --ckpt_path points into."""
    if FLAGS.config:
        return FLAGS.config
    if FLAGS.saved_model_dir:
        from common.export.saved_model import saved_model_config_path

        path = saved_model_config_path(FLAGS.saved_model_dir)
        return path if os.path.isfile(path) else None
    from common.model_dir import CONFIG_FILE, model_dir_of

    directory = model_dir_of(FLAGS.ckpt_path)
    if directory:
        logging.info("Using %s/%s (pass --config to use another recipe).", directory,
                     CONFIG_FILE)
        return os.path.join(directory, CONFIG_FILE)
    return None


def main(argv):
    del argv
    try:
        config = load_config(_config_file(), FLAGS.model_name, FLAGS.hparams)
        _check_outputs(config)
        globals()[f"run_{FLAGS.runmode}"](config)
    except _user_errors() as error:
        logging.error("%s", error)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
