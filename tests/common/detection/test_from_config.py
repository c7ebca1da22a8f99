"""The geometry objects built from config objects, and the one NMS vocabulary."""
import dataclasses

import numpy as np
import pytest

from common.config import ConfigError, load_config
from common.detection.anchors import AnchorSet
from common.detection.image_size import parse_image_size
from common.detection.nms import ALIASES, MODES, NMS_METHODS, NmsSettings
from common.detection.postprocess import postprocess
from common.detection.target_assigner import TargetAssigner


def test_anchor_set_and_assigner_from_a_non_d0_config():
    model = load_config(model_name="efficientdet-d1",
                        hparams="model.image_size=256x384,model.num_classes=7,model.anchor_scale=3.0").model
    anchors = AnchorSet.from_config(model)
    expected = AnchorSet.build((256, 384), model.min_level, model.max_level, model.num_scales,
                               model.aspect_ratios, 3.0)
    assert anchors.image_size == (256, 384)
    np.testing.assert_array_equal(anchors.boxes, expected.boxes)
    assigner = TargetAssigner.from_config(model)
    assert assigner.num_classes == 7
    np.testing.assert_array_equal(assigner.anchors.boxes, anchors.boxes)
    assert TargetAssigner.from_config(model, anchors=anchors).anchors is anchors


def test_nms_settings_own_the_method_names():
    assert set(NMS_METHODS) == set(MODES) | set(ALIASES)
    model = load_config(model_name="efficientdet-d0").model
    settings = NmsSettings.from_config(model.nms)
    assert settings.mode == "global" and settings.max_detections == model.nms.max_output_size
    assert NmsSettings(mode="hard").mode == "global_hard"
    for method in NMS_METHODS:  # the config accepts exactly the names post-processing accepts
        dataclasses.replace(model.nms, method=method).validate()
    with pytest.raises(ConfigError, match="model.nms.method"):
        dataclasses.replace(model.nms, method="fast").validate()
    with pytest.raises(ValueError, match="NMS mode"):
        NmsSettings(mode="fast")


def test_postprocess_takes_the_settings():
    anchors = AnchorSet.build(64, 3, 4, 1, (1.0,), 1.0)
    counts = anchors.level_counts()
    logits = [np.full((1, h, w, 2), -5.0, np.float32) for h, w in anchors.level_sizes]
    logits[0][0, 0, 0, 1] = 5.0
    codes = [np.zeros((1, h, w, 4), np.float32) for h, w in anchors.level_sizes]
    settings = NmsSettings(mode="soft", max_detections=3, max_candidates=sum(counts))
    det = postprocess(logits, codes, anchors.boxes, anchors.image_size, 2, **settings.postprocess_kwargs())
    assert det.boxes.shape == (1, 3, 4)
    assert int(det.classes[0, 0]) == 2
    np.testing.assert_allclose(det.boxes[0, 0].numpy(), anchors.boxes[0].clip(0, 64), atol=1e-5)


def test_one_image_size_parser():
    assert parse_image_size(512) == (512, 512)
    assert parse_image_size(np.int64(64)) == (64, 64)
    assert parse_image_size([256, 384.0]) == (256, 384)
    for bad in ("512x512", b"512", (0, 64), (64,), 63.5, [64, 64.5], True):
        with pytest.raises(ValueError, match="image_size"):
            parse_image_size(bad)
