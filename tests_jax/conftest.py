"""The JAX test process: ``KERAS_BACKEND=jax python -m pytest tests_jax``.

The backend is fixed when Keras is first imported, so these tests run in their own
pytest process (``make test`` runs it after the TensorFlow suite). TensorFlow is
made unimportable here: inference on JAX must not need it. What TensorFlow
computes for comparison comes from ``_tf_reference.py``, run once per session in
a subprocess (``KERAS_BACKEND=tensorflow``), started when the session starts so
that it overlaps with the JAX network builds.
"""
import importlib.util
import os
import pathlib
import subprocess
import sys

os.environ["KERAS_BACKEND"] = "jax"

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "automl"  # as in tests/conftest.py


class _NoTensorFlow:
    """A meta-path finder refusing ``tensorflow`` (and its tf_keras / tensorboard kin)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "tensorboard"):
            raise ImportError(f"{name} is blocked: the JAX tests must run without TensorFlow.")
        return None


sys.meta_path.insert(0, _NoTensorFlow())

import keras  # noqa: E402

import model_zoo  # noqa: E402,F401  (registers the model families)

_REFERENCE = {}


def pytest_sessionstart(session):
    if keras.backend.backend() != "jax":
        raise pytest.UsageError(f"tests_jax needs KERAS_BACKEND=jax; Keras runs "
                                f"{keras.backend.backend()} (imported before this conftest?).")
    if not FIXTURES.is_dir():
        return
    out = pathlib.Path(session.config._tmp_path_factory.mktemp("tf_reference"))
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    log = open(out / "log.txt", "w")
    _REFERENCE.update(out=out, log=log, process=subprocess.Popen(
        [sys.executable, str(REPO / "tests_jax" / "_tf_reference.py"), str(out), str(FIXTURES)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))


def pytest_sessionfinish(session, exitstatus):
    process = _REFERENCE.get("process")
    if process is not None and process.poll() is None:
        process.kill()


@pytest.fixture(scope="session")
def automl_fixtures():
    if not FIXTURES.is_dir():
        pytest.skip(f"official google/automl fixtures not found at {FIXTURES} "
                    "(they live in ../shared/fixtures/automl beside the clone)")
    return FIXTURES


@pytest.fixture(scope="session")
def tf_reference(automl_fixtures):
    """``{"dir": OUT_DIR, "outputs": {name: array}}`` written by ``_tf_reference.py``."""
    import numpy as np

    process, out = _REFERENCE["process"], _REFERENCE["out"]
    code = process.wait(timeout=1800)
    _REFERENCE["log"].close()
    assert code == 0, (out / "log.txt").read_text()[-4000:]
    with np.load(out / "tf_outputs.npz") as data:
        outputs = {key: data[key] for key in data.files}
    return {"dir": out, "outputs": outputs}


@pytest.fixture(scope="session")
def same_detections():
    """``assert_same_detections`` of the TensorFlow suite's export tests (one implementation)."""
    spec = importlib.util.spec_from_file_location(
        "export_test_helpers", REPO / "tests" / "export" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.assert_same_detections
