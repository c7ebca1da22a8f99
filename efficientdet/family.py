"""The EfficientDet family object (registered in ``model_zoo``)."""
import re

from common.families import ModelFamily
import efficientdet.config as detector_config

# The heads that stay trainable under ``train.freeze=backbone+bifpn``.
_DETECTION_HEADS = ("class_net", "box_net")


def _inference_wrapper():
    from efficientdet.inference import DetectionInference

    return DetectionInference


def _portable_wrapper():
    from efficientdet.portable_inference import PortableDetectionInference

    return PortableDetectionInference


EFFICIENTDET = ModelFamily.from_config_module(
    "efficientdet", detector_config,
    inference_wrapper=_inference_wrapper,
    portable_wrapper=_portable_wrapper,
    freeze_presets={
        # The EfficientNet backbone (``efficientnet-b0/...``).
        "backbone": lambda model: re.escape(model.backbone_name) + "/",
        # Backbone, P6/P7 resampling and BiFPN: only the class and box heads train.
        "backbone+bifpn": lambda model: r"(?!(%s)/)" % "|".join(_DETECTION_HEADS),
    },
    primary_metric="AP",
    results_file="detections.json",
    outputs_boxes=True,
)
