"""Shared test set-up: quiet TensorFlow, fixture locations, policy hygiene."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

import model_zoo  # noqa: E402,F401  (registers the model families)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "automl"


@pytest.fixture
def automl_fixtures():
    """Path of ``../shared/fixtures/automl``; skips (with the reason) when absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"official google/automl fixtures not found at {FIXTURES} "
                    "(they live in ../shared/fixtures/automl beside the clone)")
    return FIXTURES


@pytest.fixture(autouse=True)
def _restore_dtype_policy():
    """Tests may switch to mixed_float16; always restore float32 afterwards."""
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def read_weight_list():
    """The parser of fixture weight lists (see :func:`parse_weight_list`)."""
    return parse_weight_list


def parse_weight_list(path):
    """Parses a fixture ``keras_weights.txt`` / ``tf1_ckpt_variables.txt`` into
    ``{name_without_:0: shape_tuple}``."""
    shapes = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, shape = line.split("\t")[:2]
        if name.endswith(":0"):
            name = name[:-2]
        shapes[name] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return shapes
