"""The pipelines built from the quick-start experiment configs."""
import os

import pytest

from common.config import load_config
from dataset.classification_input import classification_dataset_from_config
from dataset.detection_input import detection_dataset_from_config
from dataset.errors import DatasetError

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def test_detection_from_quickstart_config(sample):
    config = load_config(os.path.join(CONFIGS, "quickstart-detection.yaml"), None, None, [
        f"data.train_file_pattern={sample['train_file_pattern']}",
        f"data.val_file_pattern={sample['val_file_pattern']}", "train.batch_size=2", "train.seed=1"])
    height, width = config.model.image_size
    images, labels = detection_dataset_from_config(config, True).element_spec
    assert images.shape == (2, height, width, 3)
    assert labels["cls_targets_3"].shape == (2, height // 8, width // 8, config.model.num_anchors)
    images, _ = next(iter(detection_dataset_from_config(config, False, batch_size=3)))
    assert images.shape == (3, height, width, 3)


def test_classification_from_quickstart_config(sample):
    config = load_config(os.path.join(CONFIGS, "quickstart-classification.yaml"), None, None, [
        f"data.train_file_pattern={sample['classification_train_file_pattern']}"])
    images, labels = classification_dataset_from_config(config, True, image_size=48,
                                                        randaug_magnitude=5).element_spec
    assert images.shape == (16, 48, 48, 3) and labels.shape == (16, 4)
    with pytest.raises(DatasetError, match="data.val_file_pattern is not set"):
        classification_dataset_from_config(config, False)
