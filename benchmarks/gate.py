"""Lets benchmark cases set up side by side while each one times alone.

Most of a case's wall time is one-time work that is never timed: importing
TensorFlow, building the model, tracing and optimizing the step graph, warm-up
calls. That work is mostly single-threaded, so :mod:`benchmarks.run` runs
several case processes at once, and this module keeps their numbers clean: a
case holds a *shared* ``flock`` on one lock file whenever it works untimed and an
*exclusive* one while it times, so a timed section never runs alongside another
case's set-up or timing (those processes are blocked on the lock, i.e. idle).

The runner takes the shared lock for a child *before* starting it (without
waiting: it retries later while someone is timing) and hands the locked file
descriptor down, so even the child's interpreter start-up is covered. Each gate
also writes its state (``setup`` / ``waiting`` / ``timing``) to a status file, so
the runner can start another case while one merely waits for its turn to time.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time


def take_shared(path):
    """Opens ``path`` and takes the shared lock without waiting.

    Returns:
        The file descriptor holding the lock (give it to one child, e.g. with
        ``subprocess.Popen(pass_fds=...)``, then close it in the parent), or None
        when a case is timing right now.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class TimingGate:
    """Shared lock while setting up, exclusive while timing.

    Args:
        fd: a file descriptor from :func:`take_shared` (inherited from the runner),
            kept until the process exits (the kernel then releases the lock, also
            when the process is killed). None makes :meth:`exclusive` a no-op
            (a case run on its own, e.g. from a test).
        status_path: optional file that always holds the current state:
            ``setup``, ``waiting`` (for the exclusive lock) or ``timing``.

    Attributes:
        waited_seconds / timed_seconds: time spent blocked on the lock / holding it
            exclusively (the rest of the process's life is set-up).
    """

    def __init__(self, fd=None, status_path=None):
        self._fd = fd
        self._status_path = status_path
        self.waited_seconds = self.timed_seconds = 0.0
        self._state("setup")

    def _state(self, state):
        if self._status_path:
            with open(self._status_path, "w") as handle:
                handle.write(state)

    @contextlib.contextmanager
    def exclusive(self):
        """Holds the exclusive lock for the ``with`` body (the timed part), then goes
        back to the shared lock (the case's remaining untimed work)."""
        if self._fd is None:
            yield
            return
        self._state("waiting")
        tick = time.perf_counter()
        # flock converts a lock by releasing it first anyway; done explicitly here.
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._state("timing")
        start = time.perf_counter()
        self.waited_seconds += start - tick
        try:
            yield
        finally:
            self.timed_seconds += time.perf_counter() - start
            fcntl.flock(self._fd, fcntl.LOCK_SH)  # a downgrade never waits
            self._state("setup")
