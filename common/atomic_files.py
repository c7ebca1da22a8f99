"""Complete-or-absent output files and directories.

Every file the tools write (TFRecord shards, checkpoints' side files, exports,
evaluation results, ``config.yaml``) is first written under a temporary name in
the destination's own directory and moved into place only once complete, with
one ``rename`` (atomic on POSIX within one file system). A failed or killed
writer therefore never leaves a half-written file at the destination, and an
earlier good file at the same path stays byte-for-byte intact until the new one
is complete.

Temporary names start with ``.tmp-<pid>-`` and end in ``.partial`` so that no
user glob (``data/train-*``) and no checkpoint lookup ever matches them. A
process killed with SIGKILL cannot delete its temporaries; the next writer into
the same directory removes those whose process is gone
(:func:`remove_stale_temporaries`, with a log line).

Directories (SavedModels) are swapped in with ``renameat2(RENAME_EXCHANGE)``
where the kernel offers it, so the destination always holds either the old or
the new complete directory; elsewhere the old directory is moved aside first
(a microsecond window in which neither is present).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import re
import shutil
import uuid
from typing import Iterator, List, Sequence

logger = logging.getLogger("atomic_files")

_TEMP_RE = re.compile(r"^\.tmp-(\d+)-[0-9a-f]{8}-.*\.partial$")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def temporary_path(path: str) -> str:
    """A fresh temporary name next to ``path`` (same directory, hidden, ``.partial``)."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{name}.partial")


def is_temporary(name: str) -> bool:
    """True for a base name made by :func:`temporary_path`."""
    return _TEMP_RE.match(name) is not None


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: str):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def remove_stale_temporaries(directory: str) -> List[str]:
    """Deletes temporaries in ``directory`` left by writers that no longer run.

    Returns:
        The removed paths (each also logged once).
    """
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in sorted(names):
        match = _TEMP_RE.match(name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        path = os.path.join(directory, name)
        _remove(path)
        removed.append(path)
        logger.warning("Removed %s, left incomplete by an interrupted earlier run.", path)
    return removed


def _fsync_file(path: str):
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory: str):
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _fsync_tree(root: str):
    for parent, _, files in os.walk(root):
        for name in files:
            _fsync_file(os.path.join(parent, name))
        _fsync_directory(parent)


def commit_file(temporary: str, path: str):
    """Moves the complete ``temporary`` onto ``path`` (flushed to disk first)."""
    _fsync_file(temporary)
    os.replace(temporary, path)
    _fsync_directory(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", encoding: str | None = None) -> Iterator:
    """``open(path, mode)`` whose result appears at ``path`` only when the block succeeds.

    Example::

        with atomic_write("results.json") as handle:
            json.dump(metrics, handle)
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write writes whole files; mode {mode!r} has no 'w'.")
    directory = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(directory)
    temporary = temporary_path(path)
    try:
        with open(temporary, mode, encoding=encoding) as handle:
            yield handle
        commit_file(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def write_text(path: str, text: str):
    """Replaces ``path`` with ``text`` atomically (UTF-8)."""
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)


class FileSet:
    """Several files written under temporary names and committed together.

    ``temporaries[i]`` is where the writer puts the content of ``paths[i]``;
    :meth:`commit` moves every one into place (after all are complete) and
    :meth:`discard` deletes them. As a context manager it commits on success
    and discards on any exception.
    """

    def __init__(self, paths: Sequence[str]):
        self.paths = [os.path.abspath(p) for p in paths]
        for directory in sorted({os.path.dirname(p) for p in self.paths}):
            remove_stale_temporaries(directory)
        self.temporaries = [temporary_path(p) for p in self.paths]
        self.committed = False

    def commit(self):
        for temporary in self.temporaries:
            _fsync_file(temporary)
        for temporary, path in zip(self.temporaries, self.paths):
            os.replace(temporary, path)
        for directory in sorted({os.path.dirname(p) for p in self.paths}):
            _fsync_directory(directory)
        self.committed = True

    def discard(self):
        for temporary in self.temporaries:
            _remove(temporary)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False


def _exchange(first: str, second: str) -> bool:
    """Atomically swaps two existing paths (Linux renameat2); False where unsupported."""
    library = ctypes.util.find_library("c")
    if library is None:
        return False
    libc = ctypes.CDLL(library, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                       _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), second)


def commit_directory(temporary: str, path: str):
    """Puts the complete directory ``temporary`` at ``path``, replacing what was there."""
    _fsync_tree(temporary)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.lexists(path):
        os.rename(temporary, path)
    elif os.path.isdir(path) and not os.path.islink(path) and _exchange(temporary, path):
        _remove(temporary)  # now holds the old directory
    else:
        aside = temporary_path(path)
        os.rename(path, aside)
        os.rename(temporary, path)
        _remove(aside)
    _fsync_directory(parent)


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """Yields a temporary directory that replaces ``path`` when the block succeeds.

    Write the whole directory (e.g. a SavedModel) into the yielded path; on an
    exception it is deleted and ``path`` is left as it was.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(parent)
    temporary = temporary_path(path)
    try:
        yield temporary
        if not os.path.isdir(temporary):
            raise FileNotFoundError(f"nothing was written to {temporary}")
        commit_directory(temporary, path)
    finally:
        if os.path.lexists(temporary):
            _remove(temporary)
