"""TFLite conversion of an inference wrapper: fp32, fp16 or int8, builtin ops only.

The converted function takes uint8 images of exactly the network size
``[B, h, w, 3]`` (dynamic ``B``; the in-graph letterbox is then the identity
and folds away, but the scale bookkeeping stays exact) and returns the
wrapper's final outputs, post-processing included: hard and Gaussian soft NMS
map onto the builtin ``NON_MAX_SUPPRESSION_V5`` inside a ``WHILE`` loop, so no
custom or Flex op is needed. Only ``tf.image.combined_non_max_suppression``
(NMS methods ``combined`` / ``per_class_hard``) has no builtin and is refused.

``int8``: weights and activations are quantized with a representative dataset
(images from TFRecords, image files, or random noise as a last resort); ops
without an int8 kernel stay float (``TFLITE_BUILTINS`` fallback). TensorFlow
2.18's calibrator crashes (segfault) on models with a ``WHILE`` loop, so an
int8 *detector* is exported without post-processing: it returns the raw head
outputs and :class:`common.export.predictors.TFLitePredictor` runs the NMS in
TensorFlow afterwards.
"""
from __future__ import annotations

import collections
import glob
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from common.export.errors import ExportError

QUANTIZATIONS = ("none", "fp16", "int8")


def _check_builtin_postprocess(module):
    method = getattr(module, "nms", {}).get("mode")
    if method in ("combined", "per_class_hard"):
        raise ExportError(
            f"NMS method {method!r} uses tf.image.combined_non_max_suppression, which has no "
            "TFLite builtin op. Export with --hparams model.nms.method=gaussian (or hard / "
            "per_class), or with --noinclude_postprocess to get the raw network outputs.")


def includes_postprocess(module, quantize, include_postprocess=True):
    """Whether the TFLite file for ``quantize`` carries the post-processing (see module doc)."""
    if not include_postprocess:
        return False
    return not (quantize == "int8" and module.task == "detection")


def convert_to_tflite(module, quantize="none", representative_images=None,
                      include_postprocess=True):
    """Converts an inference wrapper to a TFLite flatbuffer.

    Args:
        module: a :class:`common.export.module.InferenceModule`.
        quantize: ``none`` (fp32), ``fp16`` (float16 weights) or ``int8``.
        representative_images: for ``int8``, an iterable of uint8 ``[1, h, w, 3]``
            arrays (see :func:`representative_images`).
        include_postprocess: final outputs (True) or raw network outputs.

    Returns:
        The model as ``bytes``.

    Raises:
        ExportError: unknown quantization, missing representative data, or a
            post-processing op without a builtin.
    """
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"--quantize {quantize!r} must be one of {QUANTIZATIONS}.")
    with_post = includes_postprocess(module, quantize, include_postprocess)
    if include_postprocess and not with_post:
        logging.warning("int8 detector: exported without NMS (TensorFlow 2.18's int8 calibrator "
                        "crashes on its WHILE loop); the file returns raw head outputs and "
                        "model_inspect / TFLitePredictor apply the NMS afterwards.")
    if with_post:
        _check_builtin_postprocess(module)
    function = module.fixed_size_function(None, include_postprocess=with_post)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative_images is None:
            raise ExportError("int8 quantization needs representative images: pass "
                              "--file_pattern 'train-*.tfrecord' or --input_image 'dir/*.jpg'.")
        samples = list(representative_images)
        if not samples:
            raise ExportError("The representative dataset for int8 quantization is empty.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
    start = time.time()
    try:
        flatbuffer = converter.convert()
    except Exception as error:  # the converter raises several private error types
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ExportError(f"TFLite conversion ({quantize}) failed: {first[:500]}") from None
    logging.info("TFLite %s conversion took %.1f s.", quantize, time.time() - start)
    return flatbuffer


def op_counts(flatbuffer):
    """Operator histogram of a TFLite model over all subgraphs (``WHILE`` bodies included).

    Returns:
        ``collections.Counter`` of op names; custom ops appear as ``CUSTOM:<name>``.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, str(builtin))
        if name == "CUSTOM":
            name = "CUSTOM:" + code.CustomCode().decode()
        codes.append(name)
    counts = collections.Counter()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for j in range(subgraph.OperatorsLength()):
            counts[codes[subgraph.Operators(j).OpcodeIndex()]] += 1
    return counts


def representative_images(image_size, file_pattern=None, image_glob=None, num_samples=20, seed=0):
    """uint8 ``[1, h, w, 3]`` calibration samples for int8 quantization.

    Sources, first that is given: TFRecords of ``tf.train.Example`` with an
    ``image/encoded`` feature (the TF Object Detection API / automl layout our
    converters write), image files, else uniform noise (logged: calibration on
    noise gives poor int8 accuracy). Images are resized (stretched) to the
    network size; the ranges, not the geometry, matter for calibration.

    Raises:
        FileNotFoundError: a pattern that matches no file.
        ExportError: TFRecords without an ``image/encoded`` feature.
    """
    height, width = image_size
    if file_pattern:
        files = sorted(tf.io.gfile.glob(file_pattern))
        if not files:
            raise FileNotFoundError(f"--file_pattern {file_pattern!r} matches no TFRecord file.")
        encoded = []
        for record in tf.data.TFRecordDataset(files).take(num_samples):
            example = tf.train.Example.FromString(record.numpy())
            feature = example.features.feature.get("image/encoded")
            if feature is None or not feature.bytes_list.value:
                raise ExportError(f"Records of {files[0]!r} have no 'image/encoded' feature; "
                                  "calibrate with --input_image 'dir/*.jpg' instead.")
            encoded.append(feature.bytes_list.value[0])
    elif image_glob:
        files = sorted(glob.glob(image_glob))
        if not files:
            raise FileNotFoundError(f"--input_image {image_glob!r} matches no file.")
        encoded = [open(f, "rb").read() for f in files[:num_samples]]
    else:
        logging.warning("No --file_pattern or --input_image: calibrating int8 on random noise.")
        rng = np.random.default_rng(seed)
        return [rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
                for _ in range(num_samples)]
    samples = []
    for data in encoded:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.image.resize(image, (height, width))
        samples.append(np.clip(np.round(image.numpy()), 0, 255).astype(np.uint8)[None])
    return samples


def write_tflite(flatbuffer, path):
    """Writes the flatbuffer; returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(flatbuffer)
    return path
