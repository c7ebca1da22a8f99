"""TFLite conversion of an inference wrapper: fp32, fp16 or int8, builtin ops only.

The converted function takes uint8 images of exactly the network size
``[B, h, w, 3]`` (the in-graph letterbox is then the identity and folds away,
but the scale bookkeeping stays exact) and returns the wrapper's final
outputs, post-processing included: hard and Gaussian soft NMS map onto the
builtin ``NON_MAX_SUPPRESSION_V5``, so no custom or Flex op is needed. Only
``tf.image.combined_non_max_suppression`` (NMS methods ``combined`` /
``per_class_hard``) has no builtin and is refused.

Batch size: ``batch_size=None`` gives a file with a dynamic batch; its NMS
runs once per image inside a ``WHILE`` loop. A static ``batch_size`` builds
the post-processing unrolled (one NMS op per image, no ``WHILE``; see
:mod:`common.detection.postprocess`), and
:class:`common.export.predictors.TFLitePredictor` splits larger batches into
calls of that size.

``int8``: weights and activations are quantized with a representative dataset
(images from TFRecords, image files, or random noise as a last resort); ops
without an int8 kernel stay float (``TFLITE_BUILTINS`` fallback). Two
measures keep the post-processing inside an int8 file and correct:

* TensorFlow 2.18's calibrator crashes (segfault) on a model with a ``WHILE``
  loop, so an int8 *detector* with post-processing is always converted with a
  static batch size (1 unless given): its NMS is then loop-free;
* the post-processing ops (name scope
  :data:`common.export.module.POSTPROCESS_SCOPE`) are kept in float with the
  selective quantization of ``tf.lite.experimental.QuantizationDebugger``
  (``denylisted_nodes``). Quantizing them too collapsed the decoded boxes to
  zero height (measured: a trained quickstart detector found nothing);
  float, they cost nothing measurable and the scores stay within ~0.01 of fp32.
"""
from __future__ import annotations

import collections
import glob
import os
import time
import warnings

import numpy as np
import tensorflow as tf
from absl import logging

from common.atomic_files import atomic_write
from common.export.errors import ExportError
from common.export.module import POSTPROCESS_SCOPE
from common.progress import progress

QUANTIZATIONS = ("none", "fp16", "int8")


def _check_builtin_postprocess(module):
    method = getattr(module, "nms", {}).get("mode")
    if method in ("combined", "per_class_hard"):
        raise ExportError(
            f"NMS method {method!r} uses tf.image.combined_non_max_suppression, which has no "
            "TFLite builtin op. Export with --hparams model.nms.method=gaussian (or hard / "
            "per_class), or with --noinclude_postprocess to get the raw network outputs.")


def static_batch_size(module, quantize, include_postprocess=True, batch_size=None):
    """The static batch size the file is converted with (None = dynamic).

    An int8 detector with post-processing needs one (module docstring): 1 unless
    ``batch_size`` is given.
    """
    if batch_size is not None:
        if int(batch_size) < 1:
            raise ExportError(f"TFLite batch size {batch_size} must be a positive integer.")
        return int(batch_size)
    if quantize == "int8" and include_postprocess and module.outputs_boxes:
        return 1
    return None


def _batched_samples(samples, batch_size):
    """Regroups ``[1, h, w, 3]`` samples into ``[batch_size, h, w, 3]`` (cycling)."""
    if batch_size in (None, 1):
        return samples
    count = max(1, len(samples) // batch_size)
    return [np.concatenate([samples[(i * batch_size + j) % len(samples)]
                            for j in range(batch_size)]) for i in range(count)]


def convert_to_tflite(module, quantize="none", representative_images=None,
                      include_postprocess=True, batch_size=None):
    """Converts an inference wrapper to a TFLite flatbuffer.

    Args:
        module: a :class:`common.export.module.InferenceModule`.
        quantize: ``none`` (fp32), ``fp16`` (float16 weights) or ``int8``.
        representative_images: for ``int8``, an iterable of uint8 ``[1, h, w, 3]``
            arrays (see :func:`representative_images`).
        include_postprocess: final outputs (True) or raw network outputs.
        batch_size: static batch size of the file; None = dynamic, except for
            an int8 detector with post-processing (1; see the module docstring).

    Returns:
        The model as ``bytes``.

    Raises:
        ExportError: unknown quantization, missing representative data, a bad
            batch size, or a post-processing op without a builtin.
    """
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"--quantize {quantize!r} must be one of {QUANTIZATIONS}.")
    if include_postprocess:
        _check_builtin_postprocess(module)
    batch_size = static_batch_size(module, quantize, include_postprocess, batch_size)
    if batch_size is not None:
        logging.info("TFLite %s: static batch size %d%s.", quantize, batch_size,
                     ", loop-free post-processing" if include_postprocess else "")
    function = module.fixed_size_function(batch_size, include_postprocess=include_postprocess)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative_images is None:
            raise ExportError("int8 quantization needs representative images: pass "
                              "--file_pattern 'train-*.tfrecord' or --input_image 'dir/*.jpg'.")
        samples = _batched_samples(list(representative_images), batch_size)
        if not samples:
            raise ExportError("The representative dataset for int8 quantization is empty.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _calibration_feed(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
    start = time.time()
    try:
        if quantize == "int8" and include_postprocess:
            flatbuffer = _quantize_with_float_postprocess(converter, samples)
        else:
            flatbuffer = converter.convert()
    except Exception as error:  # the converter raises several private error types
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ExportError(f"TFLite conversion ({quantize}) failed: {first[:500]}") from None
    logging.info("TFLite %s conversion took %.1f s.", quantize, time.time() - start)
    return flatbuffer


def _tensor_names(flatbuffer):
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        names += [subgraph.Tensors(t).Name().decode() for t in range(subgraph.TensorsLength())]
    return names


def _calibration_feed(samples):
    """The converter's representative dataset: ``[sample]`` per batch, with a bar."""
    with progress(len(samples), "int8 calibration", "batch") as bar:
        for sample in samples:
            yield [sample]
            bar.update(1)


def _quantize_with_float_postprocess(converter, samples):
    """int8 network, float post-processing (module docstring): calibrate once, then
    quantize with every tensor of the post-processing scope denylisted."""
    with warnings.catch_warnings():  # "use ai_edge_litert": tf.lite is what TF 2.18 ships
        warnings.simplefilter("ignore", UserWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: _calibration_feed(samples))
        post = [n for n in _tensor_names(debugger.calibrated_model)
                if n.startswith(POSTPROCESS_SCOPE + "/")]
        if not post:
            raise ExportError("Found no post-processing tensors to keep in float (name scope "
                              f"{POSTPROCESS_SCOPE!r}); export with --noinclude_postprocess.")
        logging.info("int8: keeping %d post-processing tensors in float.", len(post))
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=post)
        return debugger.get_nondebug_quantized_model()


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
    """Writes the flatbuffer to ``path`` (parents created); returns ``path``.

    Written under a temporary name beside ``path`` and renamed into place when
    complete, so an interrupted write leaves an earlier file there intact.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb") as handle:
        handle.write(flatbuffer)
    return path
