"""A checkpoint as a Python object: load once, predict on files or arrays, draw, export.

The families expose it as ``efficientdet.Detector`` and
``efficientnet_v2.Classifier``::

    from efficientdet import Detector
    detector = Detector.from_checkpoint("runs/d0")            # ours, or an official checkpoint
    detections = detector.predict(["street.jpg", image_array])

Everything runs through the same objects as ``model_inspect.py``: the family's
inference wrapper (pre-processing, the network with its batch norms folded,
post-processing, all in one graph; :func:`common.export.factory.build_inference_module`),
:class:`common.export.predictors.KerasPredictor`, the drawing functions and the
exporters, so a prediction here equals ``--runmode infer``'s.
"""
from __future__ import annotations

import os

import numpy as np

from common.config import load_config
from common.export.infer import read_image
from common.export.label_map import load_label_map, model_dir_label_map
from common.model_dir import CONFIG_FILE, model_dir_of


class InferenceModel:
    """A loaded model of one family (use a family's subclass).

    Attributes:
        config: the resolved ``ExperimentConfig``.
        module: the family's inference wrapper.
        label_map: ``{class_id: name}`` (may be empty).
    """

    family_name = None  # the ModelFamily the subclass serves (e.g. "efficientdet")

    def __init__(self, config, module, label_map=None, source=None):
        from common.export.portable import PortableInference, PortablePredictor

        self.config = config
        self.module = module
        self.label_map = dict(label_map or {})
        # (checkpoint path, use_ema) the weights came from: the Keras-weights export
        # rebuilds an unfolded network from it.
        self._source = source
        if isinstance(module, PortableInference):
            self._predictor = PortablePredictor(module)
        else:
            from common.export.predictors import KerasPredictor

            self._predictor = KerasPredictor(module)

    @classmethod
    def _register_family(cls):
        """Registers the subclass's model family (a script need not import model_zoo)."""

    @classmethod
    def from_checkpoint(cls, path=None, model_name=None, config=None, hparams=None,
                        label_map=None, use_ema=True):
        """Loads a checkpoint.

        Args:
            path: a model directory written by ``main.py`` (its ``config.yaml``
                and class names are used), a checkpoint prefix, or an official
                google/automl checkpoint folder; None keeps random weights.
            model_name: e.g. ``"efficientdet-d0"``; needed for an official
                checkpoint without ``config``.
            config: a YAML recipe path (instead of the model directory's).
            hparams: ``"a.b=1,c=2"`` overrides.
            label_map: ``"coco"``, a label-map file or a ``{id: name}`` dict;
                default: the model directory's names, else COCO's for a
                90-class detector.
            use_ema: load the moving-average weights when present.

        Raises:
            common.config.ConfigError, common.checkpoints.CheckpointError,
            FileNotFoundError, common.export.label_map.LabelMapError: bad
                names, paths, files or checkpoints (the message says which).
        """
        from common.export.factory import build_inference_module

        cls._register_family()
        directory = model_dir_of(path)
        config_file = config or (os.path.join(directory, CONFIG_FILE) if directory else None)
        resolved = load_config(config_file, model_name, hparams)
        if resolved.family.name != cls.family_name:
            raise ValueError(f"{resolved.model.name} belongs to the {resolved.family.name} "
                             f"family; load it with that family's class, not {cls.__name__}.")
        module = build_inference_module(resolved, path, use_ema)
        return cls(resolved, module, cls._label_map(resolved, path, label_map), (path, use_ema))

    @classmethod
    def _label_map(cls, config, path, label_map):
        first_id = 1 if config.family.outputs_boxes else 0
        if isinstance(label_map, dict):
            return {int(k): str(v) for k, v in label_map.items()}
        if label_map:
            return load_label_map(label_map, first_id)
        return model_dir_label_map(path) or cls._default_label_map(config)

    @classmethod
    def _default_label_map(cls, config):
        return {}

    @staticmethod
    def _images(images):
        """One image, a list of images or a ``[B, H, W, C]`` batch → uint8 RGB arrays.

        An image is a file path (JPEG, PNG, BMP, GIF) or a uint8 array: ``[H, W, 3]``
        RGB, ``[H, W]`` or ``[H, W, 1]`` gray (repeated to RGB) or ``[H, W, 4]`` RGBA
        (alpha dropped), the conversions applied to image files of those kinds.
        """
        if isinstance(images, (str, os.PathLike)) or (
                isinstance(images, np.ndarray) and images.ndim in (2, 3)):
            images = [images]
        loaded = []
        for image in images:
            if isinstance(image, (str, os.PathLike)):
                loaded.append(read_image(os.fspath(image)))
                continue
            array = np.asarray(image)
            if array.ndim == 2:
                array = array[..., None]
            if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
                raise ValueError(f"An image array must be [H, W, 3] (RGB), [H, W] or [H, W, 1] "
                                 f"(gray) or [H, W, 4] (RGBA), got {array.shape}.")
            if array.dtype != np.uint8:
                raise ValueError(f"An image array must be uint8 (0-255), got {array.dtype}.")
            if array.shape[-1] == 1:
                array = np.repeat(array, 3, axis=-1)
            loaded.append(array[..., :3])
        return loaded

    def _run(self, image):
        """The wrapper's outputs for one uint8 ``[H, W, 3]`` image (batch of one)."""
        return self._predictor(image[None])

    def export(self, path, format="saved_model", quantize="none", calibration_images=None,
               num_calibration_images=20, include_postprocess=True):
        """Writes the model with the project's exporters (complete or not at all).

        Args:
            path: the SavedModel or Keras-weights directory, or the ``.tflite`` /
                ``.onnx`` file.
            format: ``saved_model``, ``tflite``, ``onnx`` (TensorFlow backend) or
                ``keras_weights`` (any backend; loads on every Keras backend, see
                :mod:`common.export.keras_weights`).
            quantize: TFLite only: ``none``, ``fp16`` or ``int8``.
            calibration_images: int8 only: a glob of images (or TFRecords, if it
                names ``*.tfrecord*`` files) to calibrate with.
            num_calibration_images: images used for int8 calibration.
            include_postprocess: final outputs (TFLite default; ONNX with hard NMS)
                or the raw network outputs.

        Returns:
            ``path``.
        """
        from common.export.portable import PortableInference

        if format == "keras_weights":
            from common.export.keras_weights import export_keras_weights

            ckpt_path, use_ema = self._source or (None, True)
            return export_keras_weights(self.config, ckpt_path, path, use_ema, self.label_map)
        if isinstance(self.module, PortableInference) and format in (
                "saved_model", "tflite", "onnx"):
            import keras

            from common.export.errors import ExportError

            raise ExportError(f"format={format!r} writes a TensorFlow graph: run with "
                              f"KERAS_BACKEND=tensorflow (this is {keras.backend.backend()}); "
                              "format='keras_weights' works on every backend.")
        if format == "saved_model":
            from common.export.saved_model import export_saved_model

            export_saved_model(self.module, path, self.config)
        elif format == "tflite":
            from common.export import tflite

            samples = None
            if quantize == "int8":
                if not calibration_images:
                    raise ValueError("int8 export needs calibration_images (a glob of images "
                                     "or TFRecords like the ones the model will see).")
                records = ".tfrecord" in str(calibration_images)
                samples = tflite.representative_images(
                    tuple(int(s) for s in self.config.model.image_size),
                    calibration_images if records else None,
                    None if records else calibration_images, num_calibration_images)
            flatbuffer = tflite.convert_to_tflite(self.module, quantize, samples,
                                                  include_postprocess)
            tflite.write_tflite(flatbuffer, path)
        elif format == "onnx":
            from common.export.onnx_export import export_onnx

            export_onnx(self.module, path, include_postprocess)
        else:
            raise ValueError(f"format must be saved_model, tflite, onnx or keras_weights, "
                             f"got {format!r}.")
        return path
