"""The built-in sample datasets, generated once per test session."""
import pytest


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    from dataset.make_sample_dataset import make_sample_datasets

    return make_sample_datasets(str(tmp_path_factory.mktemp("sample_data")))
