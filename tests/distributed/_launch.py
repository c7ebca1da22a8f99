"""Starting real multi-process jobs (horovodrun, TF_CONFIG workers) and reading their output.

Used by the tests through the ``jobs`` fixture of ``conftest.py``.
"""
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]


def job_env(**extra):
    """Environment of a worker: this repository importable, TensorFlow quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def start(command, env=None):
    """Starts ``command`` in its own process group (so a hung job can be killed whole)."""
    return subprocess.Popen([str(c) for c in command], cwd=str(REPO_ROOT), env=env or job_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(process, timeout):
    """Waits for ``process``; returns ``(returncode, output)``, killing it on timeout."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{process.args[:3]}... still running after {timeout} s (hang); "
                    f"last output:\n{(output or '')[-3000:]}")
    return process.returncode, output or ""


def run(command, timeout, env=None):
    """Runs ``command`` to completion; returns ``(returncode, output)``."""
    return finish(start(command, env), timeout)


def run_horovod(horovodrun, script, *args, num_proc=2, timeout=120):
    """``horovodrun -np N --gloo python tests/distributed/<script> args...``."""
    command = [horovodrun, "-np", num_proc, "--gloo", sys.executable, HERE / script, *args]
    return run(command, timeout)


def free_ports(count):
    """``count`` currently free TCP ports on 127.0.0.1."""
    sockets = []
    for _ in range(count):
        handle = socket.socket()
        handle.bind(("127.0.0.1", 0))
        sockets.append(handle)
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


def quiet_tail(output, lines=60):
    """The end of a job's output without TensorFlow's start-up noise."""
    noise = ("cpu_feature_guard", "To enable the following", "cuda", "oneDNN", "cuDNN", "cuBLAS",
             "cuFFT", "WARNING: All log messages", "absl::InitializeLog")
    kept = [line for line in output.splitlines() if not any(n in line for n in noise)]
    return "\n".join(kept[-lines:])
