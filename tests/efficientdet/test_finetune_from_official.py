"""Fine-tuning from the official D0 checkpoint with another number of classes."""
import numpy as np
import pytest

from common.checkpoints import CheckpointError, load_official_checkpoint
from efficientdet.builder import build_efficientdet


def test_twenty_classes_load_everything_but_the_class_predictor(automl_fixtures):
    checkpoint = str(automl_fixtures / "effdet_d0" / "tf1_ema_ckpt")
    model = build_efficientdet("efficientdet-d0", num_classes=20, image_size=128)
    with pytest.raises(CheckpointError, match="class-predict"):
        load_official_checkpoint(model, checkpoint)
    predictor = {v.path: np.asarray(v).copy() for v in model.weights if "class-predict" in v.path}
    report = load_official_checkpoint(model, checkpoint, skip_mismatch=True)
    skipped = sorted(name for name, *_ in report.skipped_shape)
    assert skipped == ["class_net/class-predict/bias", "class_net/class-predict/pointwise_kernel"]
    assert len(report.loaded) == 709 - 2 and not report.missing
    for variable in model.weights:
        if variable.path in predictor and "depthwise" not in variable.path:
            # Re-initialized: the focal-loss prior bias, untouched by the import.
            np.testing.assert_array_equal(np.asarray(variable), predictor[variable.path])


@pytest.mark.slow
def test_finetuning_run_starts_from_the_official_checkpoint(automl_fixtures, tmp_path):
    from common.config import load_config
    from common.training.runner import RunOptions, train
    from dataset.make_sample_dataset import make_sample_datasets

    sample = make_sample_datasets(str(tmp_path / "sample"), num_train=16, num_val=8)
    config = load_config(model_name="efficientdet-d0", overrides=[
        "model.num_classes=20", "model.image_size=128", "train.batch_size=2",
        "train.steps_per_epoch=2", "train.num_epochs=1",
        f"data.train_file_pattern={sample['train_file_pattern']}",
        f"runtime.model_dir={tmp_path / 'model'}"])
    result = train(config, RunOptions(
        init_checkpoint=str(automl_fixtures / "effdet_d0" / "tf1_ema_ckpt")))
    assert result["steps"] == 2
    assert np.isfinite(result["history"][-1]["total_loss"])
