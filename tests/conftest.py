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


@pytest.fixture(scope="session")
def trained_detector(tmp_path_factory):
    """The quickstart detector (D0, 128×128, 3 classes), trained once per session
    exactly as ``make demo`` trains it: ``main.py --mode train_and_eval`` in a
    subprocess with no data flags (the built-in sample dataset at 128 px and
    ``configs/quickstart-detection.yaml`` as shipped).

    Returns a dict with ``model_dir`` (checkpoints, the resolved ``config.yaml``,
    ``dllogger.json``, ``eval_epoch*.json`` detections, ``eval_pictures/``),
    ``sample`` (the paths of :func:`dataset.make_sample_dataset.make_sample_datasets`)
    and ``stdout`` (what the run printed).
    """
    import subprocess
    import sys

    from dataset.make_sample_dataset import make_sample_datasets

    root = tmp_path_factory.mktemp("trained_detector")
    sample_dir, model_dir = root / "sample", root / "model"
    sample = make_sample_datasets(str(sample_dir), image_size=128)
    result = subprocess.run(
        [sys.executable, "main.py", "--mode", "train_and_eval", "--model_dir", str(model_dir),
         "--sample_data_dir", str(sample_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"model_dir": str(model_dir), "sample": sample, "stdout": result.stdout}
