"""Fixtures of the multi-process tests.

Worker scripts live beside the tests as ``_worker_*.py`` and write their results
into a temporary directory given on the command line; ``_toy.py`` is the tiny
problem they train and ``_launch.py`` starts them.
"""
import importlib.util
import pathlib
import shutil
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent


def _load(name):
    spec = importlib.util.spec_from_file_location(f"tests_distributed_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def toy():
    """The toy problem (:mod:`_toy`)."""
    return _load("_toy")


@pytest.fixture(scope="session")
def jobs():
    """Process launching helpers (:mod:`_launch`)."""
    return _load("_launch")


@pytest.fixture(scope="session")
def horovodrun():
    """Path of ``horovodrun`` next to this Python; skips when Horovod is not installed."""
    pytest.importorskip(
        "horovod.tensorflow",
        reason="Horovod is not installed in this environment: run "
               "scripts/install_horovod.sh (CI does, via `make test`)")
    candidate = pathlib.Path(sys.executable).parent / "horovodrun"
    path = str(candidate) if candidate.exists() else shutil.which("horovodrun")
    if not path:
        pytest.skip("horovod imports but its horovodrun launcher is not on PATH")
    return path
