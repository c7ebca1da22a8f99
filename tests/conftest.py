"""Shared test set-up: quiet TensorFlow, fixture locations, policy hygiene."""
import os
import pathlib
import subprocess
import sys
import tempfile

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


def run_side_by_side(script, *arg_lists, env=None, timeout=900):
    """Runs ``python script *args`` for each argument list, each in its own process in
    the repository root, all started at once, and returns their ``CompletedProcess`` es
    (text ``stdout``/``stderr``) in order. TensorFlow's start-up, tracing and
    conversion are mostly single-threaded, so independent runs overlap on 2 cores. The
    runs share the file system: check it after all of them."""
    runs = []
    try:
        for args in arg_lists:
            # Output into files: a full pipe would stall a run while another is read.
            out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
            command = [sys.executable, script, *map(str, args)]
            runs.append((subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out,
                                          stderr=err), out, err))
        results = []
        for process, out, err in runs:
            process.wait(timeout=timeout)
            out.seek(0)
            err.seek(0)
            results.append(subprocess.CompletedProcess(process.args, process.returncode,
                                                       out.read(), err.read()))
        return results
    finally:
        for process, out, err in runs:
            if process.poll() is None:
                process.kill()
                process.wait()
            out.close()
            err.close()


@pytest.fixture(scope="session")
def side_by_side():
    """:func:`run_side_by_side`: independent command-line runs started at once."""
    return run_side_by_side


@pytest.fixture(autouse=True)
def _restore_dtype_policy():
    """Tests may switch to mixed_float16; always restore float32 afterwards."""
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def read_weight_list():
    """The parser of fixture weight lists (see :func:`parse_weight_list`)."""
    return parse_weight_list


def parse_weight_list(path, with_trainable=False):
    """Parses a fixture ``keras_weights.txt`` / ``tf1_ckpt_variables.txt`` into
    ``{name_without_:0: shape_tuple}`` (``with_trainable``: ``{name: (shape,
    trainable)}`` from a list with the third, trainable column)."""
    shapes = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        name, shape = fields[:2]
        if name.endswith(":0"):
            name = name[:-2]
        shape = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
        shapes[name] = (shape, fields[2] == "1") if with_trainable else shape
    return shapes


@pytest.fixture(scope="session")
def demo_sample_data(tmp_path_factory):
    """The sample datasets as ``make demo`` makes them (128 px detection images)."""
    from dataset.make_sample_dataset import make_sample_datasets

    return make_sample_datasets(str(tmp_path_factory.mktemp("demo_sample")), image_size=128)


def _train_quickstart(tmp_path_factory, sample, name, *flags):
    """``main.py --mode train_and_eval`` on the sample data, as a user runs it."""
    import subprocess
    import sys

    model_dir = tmp_path_factory.mktemp(name) / "model"
    result = subprocess.run(
        [sys.executable, "main.py", "--mode", "train_and_eval", "--model_dir", str(model_dir),
         "--sample_data_dir", sample["root"], *flags],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"model_dir": str(model_dir), "sample": sample, "stdout": result.stdout}


@pytest.fixture(scope="session")
def trained_detector(tmp_path_factory, demo_sample_data):
    """The quickstart detector (D0, 128×128, 3 classes), trained once per session
    exactly as ``make demo`` trains it: ``main.py --mode train_and_eval`` in a
    subprocess with no data flags (the built-in sample dataset at 128 px and
    ``configs/quickstart-detection.yaml`` as shipped).

    Returns a dict with ``model_dir`` (checkpoints, the resolved ``config.yaml``,
    ``dllogger.json``, ``eval_epoch*.json`` detections, ``eval_pictures/``),
    ``sample`` (the paths of :func:`dataset.make_sample_dataset.make_sample_datasets`)
    and ``stdout`` (what the run printed).
    """
    return _train_quickstart(tmp_path_factory, demo_sample_data, "trained_detector")


@pytest.fixture(scope="session")
def trained_lite0(tmp_path_factory, demo_sample_data):
    """EfficientDet-Lite0 fine-tuned the quickstart way (``--model_name
    efficientdet-lite0``: the quickstart recipe, 128×128, on the sample data),
    8 of the recipe's 16 epochs to keep the suite short (AP 0.45 there); the
    same dict as ``trained_detector``."""
    return _train_quickstart(tmp_path_factory, demo_sample_data, "trained_lite0",
                             "--model_name", "efficientdet-lite0", "--num_epochs", "8")
