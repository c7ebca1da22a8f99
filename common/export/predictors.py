"""One calling convention for every form of a model: wrapper, SavedModel, TFLite, ONNX.

A predictor maps uint8 images ``[B, H, W, 3]`` (NumPy) to a dict of NumPy
outputs named as the wrapper names them (``detection_boxes`` …, or ``logits``
…). ``raw`` maps normalized float images to the raw network outputs where the
format has them. ``infer`` and ``benchmark`` use these, and so do the tests.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import tensorflow as tf


def _numpy(outputs):
    return {k: np.asarray(v) for k, v in outputs.items()}


class KerasPredictor:
    """An in-memory :class:`common.export.module.InferenceModule`.

    Args:
        module: the wrapper.
        jit_compile: compile the network part with XLA.
    """

    kind = "keras"

    def __init__(self, module, jit_compile=False):
        self.module = module
        self.image_size = module.image_size
        self.task = module.task
        self.outputs_boxes = module.outputs_boxes
        self.network_fn = tf.function(module.raw_outputs, jit_compile=jit_compile)

        @tf.function
        def end_to_end(images):
            normalized, side_info = module.preprocess_batch(images)
            return module.postprocess(self.network_fn(normalized), side_info)

        self.end_to_end_fn = end_to_end

    def __call__(self, images):
        return _numpy(self.end_to_end_fn(tf.convert_to_tensor(images)))

    def raw(self, normalized):
        return _numpy(self.network_fn(tf.convert_to_tensor(normalized, tf.float32)))


class SavedModelPredictor:
    """A SavedModel written by :func:`common.export.saved_model.export_saved_model`."""

    kind = "saved_model"

    def __init__(self, export_dir):
        from common.export.saved_model import load_saved_model

        self.loaded = load_saved_model(export_dir)
        signatures = self.loaded.signatures
        self.end_to_end_fn = signatures["serving_default"]
        self.encoded_fn = signatures["serve_encoded"]
        self.network_fn = signatures["raw_outputs"]
        spec = self.network_fn.structured_input_signature[1]["normalized_images"]
        self.image_size = tuple(spec.shape[1:3])
        keys = set(self.end_to_end_fn.structured_outputs)
        # An exported file says what it is through its outputs.
        self.outputs_boxes = "detection_boxes" in keys
        self.task = "detection" if self.outputs_boxes else "classification"

    def __call__(self, images):
        return _numpy(self.end_to_end_fn(images=tf.convert_to_tensor(images, tf.uint8)))

    def predict_encoded(self, encoded):
        return _numpy(self.encoded_fn(encoded_images=tf.constant(list(encoded))))

    def raw(self, normalized):
        return _numpy(self.network_fn(normalized_images=tf.convert_to_tensor(normalized,
                                                                             tf.float32)))


class TFLitePredictor:
    """A TFLite file written by ``model_inspect.py --runmode tflite``.

    Its input is uint8 ``[B, h, w, 3]`` at the network size. A file with a
    static batch size (``fixed_batch_size``; int8 detectors) is called in
    chunks of that size, the last chunk padded by repeating its final image.
    A file without post-processing (``--noinclude_postprocess``) returns raw
    outputs; given ``postprocess_module`` (the wrapper of the same config),
    the predictor applies its post-processing in TensorFlow so that callers get
    final outputs either way. Pictures of another size are fitted to the
    network size first (its ``fit_pictures``: the letterbox or crop window in
    NumPy, rounded to uint8) when ``postprocess_module`` is given, and
    detection boxes are scaled back to the pictures' pixels, so that the file
    can stand in for the wrapper in ``--runmode infer`` / ``infer_video``.

    Args:
        model: path of a ``.tflite`` file or its bytes.
        postprocess_module: optional wrapper of the file's config: its
            ``postprocess`` for raw files, its pre-processing settings for
            pictures of other sizes.
        num_threads: interpreter threads (None: TFLite's default).
    """

    kind = "tflite"

    def __init__(self, model, postprocess_module=None, num_threads=None):
        if isinstance(model, (str, os.PathLike)):
            if not os.path.isfile(model):
                raise FileNotFoundError(f"TFLite file {str(model)!r} does not exist.")
            with open(model, "rb") as handle:
                model = handle.read()
        self.model_content = bytes(model)
        self.num_threads = num_threads
        self.postprocess_module = postprocess_module
        self.interpreter = self._new_interpreter()
        detail = self.interpreter.get_input_details()[0]
        self.image_size = tuple(int(s) for s in detail["shape_signature"][1:3])
        batch = int(detail["shape_signature"][0])
        self.fixed_batch_size = batch if batch > 0 else None
        self._batch = None
        self.runner = None
        keys = set(self.interpreter.get_signature_list()["serving_default"]["outputs"])
        self.returns_raw = not ({"detection_boxes", "probabilities"} & keys)
        self.outputs_boxes = ("detection_boxes" in keys
                              or any(k.startswith("class_outputs") for k in keys))
        self.task = "detection" if self.outputs_boxes else "classification"

    def _new_interpreter(self):
        with warnings.catch_warnings():  # "use ai_edge_litert": tf.lite is what TF 2.18 ships
            warnings.simplefilter("ignore", UserWarning)
            return tf.lite.Interpreter(model_content=self.model_content,
                                       num_threads=self.num_threads)

    def _run(self, images):
        images = np.asarray(images, np.uint8)
        fixed = self.fixed_batch_size
        if fixed is not None and images.shape[0] != fixed:
            count = images.shape[0]
            chunks = []
            for start in range(0, count, fixed):
                chunk = images[start:start + fixed]
                pad = fixed - chunk.shape[0]
                if pad:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
                chunks.append(self._run(chunk))
            return {k: np.concatenate([c[k] for c in chunks])[:count] for k in chunks[0]}
        if self._batch != images.shape[0]:
            # A fresh interpreter per batch size: resizing one that has already run
            # gave wrong outputs (TF 2.18, XNNPACK) for this model family.
            self.runner = None
            self.interpreter = self._new_interpreter()
            index = self.interpreter.get_input_details()[0]["index"]
            self.interpreter.resize_tensor_input(index, list(images.shape), strict=False)
            self.interpreter.allocate_tensors()
            self.runner = self.interpreter.get_signature_runner("serving_default")
            self._batch = images.shape[0]
        # Copies: views into interpreter buffers would outlive the interpreter.
        return {k: np.array(v, copy=True) for k, v in self.runner(images=images).items()}

    def __call__(self, images):
        images = np.asarray(images, np.uint8)
        if tuple(images.shape[1:3]) == self.image_size:
            return self._final_outputs(images)
        if self.postprocess_module is None:
            raise ValueError(f"This TFLite file takes {self.image_size[0]}x{self.image_size[1]} "
                             f"images, got {images.shape[1]}x{images.shape[2]}; give the "
                             f"predictor the wrapper of its config to fit other sizes.")
        fitted, scales = self.postprocess_module.fit_pictures(images, self.image_size)
        outputs = self._final_outputs(fitted)
        if "detection_boxes" in outputs:
            outputs["detection_boxes"] = outputs["detection_boxes"] * scales[:, None, None]
        return outputs

    def _final_outputs(self, images):
        """Final outputs for uint8 images of the network size."""
        outputs = self._run(images)
        if self.returns_raw and self.postprocess_module is not None:
            side_info = tf.ones([np.shape(images)[0]], tf.float32)  # network-size input: scale 1
            outputs = _numpy(self.postprocess_module.postprocess(
                {k: tf.constant(v) for k, v in outputs.items()}, side_info))
        return outputs

    def raw(self, images):
        """Raw outputs of a file without post-processing, for uint8 network-size images."""
        if not self.returns_raw:
            raise ValueError("This TFLite file includes post-processing; it has no raw outputs.")
        return self._run(images)


class OnnxPredictor:
    """An ONNX file written by ``model_inspect.py --runmode onnx`` (onnxruntime, CPU)."""

    kind = "onnx"

    def __init__(self, path):
        import onnxruntime

        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX file {path!r} does not exist.")
        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, images):
        values = self.session.run(None, {self.input_name: np.asarray(images, np.uint8)})
        return dict(zip(self.output_names, values))
