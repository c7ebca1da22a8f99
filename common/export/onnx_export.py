"""ONNX export of an inference wrapper via tf2onnx (verified with onnxruntime in the tests).

The ONNX graph takes uint8 images of exactly the network size ``[B, h, w, 3]``
(dynamic ``B``, NHWC as in TensorFlow) and returns, by default, the raw network
outputs (normalization inside; the caller letterboxes / crops to the network
size). With ``include_postprocess`` it returns the final outputs; for a
detector that needs **hard** NMS (``model.nms.method=hard``): ONNX's
``NonMaxSuppression`` has no soft-NMS, and tf2onnx would silently replace the
Gaussian soft-NMS by hard NMS.
"""
from __future__ import annotations

import os
import time

from absl import logging

from common.atomic_files import atomic_write
from common.export.errors import ExportError

DEFAULT_OPSET = 17
_ONNX_NMS_MODES = ("hard", "global_hard")


def export_onnx(module, path, include_postprocess=False, opset=DEFAULT_OPSET):
    """Converts ``module`` to an ONNX file.

    Args:
        module: a :class:`common.export.module.InferenceModule`.
        path: output ``.onnx`` file (parents created; written complete or not at all).
        include_postprocess: final outputs instead of raw network outputs.
        opset: ONNX opset.

    Returns:
        ``path``.

    Raises:
        ExportError: tf2onnx missing, or post-processing that ONNX cannot express.
    """
    try:
        import tf2onnx
    except ImportError:
        raise ExportError("ONNX export needs tf2onnx: pip install -r requirements.txt "
                          "(tf2onnx, onnx, onnxruntime).") from None
    if include_postprocess and module.outputs_boxes:
        mode = module.nms["mode"]
        if mode not in _ONNX_NMS_MODES:
            raise ExportError(
                f"ONNX has no soft-NMS / per-class NMS equivalent for model.nms.method={mode!r}; "
                "export with --hparams model.nms.method=hard, or without post-processing "
                "(the default: raw outputs).")
    import tensorflow as tf

    concrete = module.fixed_size_function(None, include_postprocess=include_postprocess)
    function = tf.function(concrete)
    start = time.time()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # No output_path: tf2onnx would write the file in place; the proto is written
    # here through a temporary name instead, so an interrupted export leaves an
    # earlier file at ``path`` intact.
    model_proto, _ = tf2onnx.convert.from_function(
        function, input_signature=concrete.structured_input_signature[0], opset=opset)
    with atomic_write(path, "wb") as handle:
        handle.write(model_proto.SerializeToString())
    logging.info("ONNX (opset %d) written to %s in %.1f s.", opset, path, time.time() - start)
    return path
