"""The built-in sample datasets, generated once per test session, and the
quickstart recipes pointed at them."""
import pathlib

import pytest

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    from dataset.make_sample_dataset import make_sample_datasets

    return make_sample_datasets(str(tmp_path_factory.mktemp("sample_data")))


@pytest.fixture(scope="session")
def quickstart_config(sample_data):
    """``make(task, model_dir, *overrides)``: configs/quickstart-{task}.yaml
    (``detection`` or ``classification``) on the sample data, writing to ``model_dir``
    (a pure factory: session-scoped so that module fixtures can train with it)."""
    from common.config import load_config

    def make(task, model_dir, *extra):
        prefix = "" if task == "detection" else "classification_"
        data = [f"data.train_file_pattern={sample_data[prefix + 'train_file_pattern']}",
                f"data.val_file_pattern={sample_data[prefix + 'val_file_pattern']}",
                f"model.num_classes={sample_data[prefix + 'num_classes']}"]
        if task == "detection":
            data.append(f"data.val_json_file={sample_data['val_json']}")
        return load_config(str(CONFIGS / f"quickstart-{task}.yaml"),
                           overrides=[*data, f"runtime.model_dir={model_dir}", *extra])

    return make
