"""Output paths of the export tools: checked before the work, written complete or not at all.

* :func:`check_output` runs before any model is built: a destination that is a
  file where a directory is needed (or the reverse), a parent that cannot be
  created, or a directory without write permission ends in one
  :class:`~common.export.errors.ExportError` that names the path and the fix,
  instead of a traceback after minutes of conversion.
* :func:`file_with_own_name` is for libraries that write a path themselves and
  choose the format by its extension (OpenCV's ``VideoWriter``): they get a
  path with the destination's own base name inside a hidden temporary
  directory beside it, moved into place only when complete.

Everything else is written through :mod:`common.atomic_files`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from typing import Iterator

from common import atomic_files
from common.export.errors import ExportError


def _nearest_existing(path: str) -> str:
    """``path`` or its closest ancestor that exists."""
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _fail(flag: str, path: str, problem: str, fix: str):
    raise ExportError(f"Cannot write {path!r} ({flag}): {problem}; {fix}.")


def _make_parent(flag: str, path: str) -> str:
    """Creates the directory that will hold ``path``; returns it."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = _nearest_existing(parent)
        _fail(flag, path, f"{blocker!r} is a file, not a directory",
              f"choose another {flag} or move that file away")
    except OSError as error:
        where = error.filename or parent
        _fail(flag, path, f"cannot create the directory {where!r} ({error.strerror})",
              f"choose another {flag} or create it with write permission")
    return parent


def _probe(flag: str, path: str, directory: str):
    """Creates and deletes a file in ``directory``: the only sure test of writability
    (permissions, read-only mounts, ACLs, a full quota)."""
    probe = atomic_files.temporary_path(os.path.join(directory, "write-test"))
    try:
        with open(probe, "wb"):
            pass
    except OSError as error:
        _fail(flag, path, f"cannot create files in {directory!r} ({error.strerror})",
              f"choose another {flag} or make that directory writable")
    finally:
        with contextlib.suppress(OSError):
            os.remove(probe)


def check_output(path: str, flag: str, directory: bool = False, writes_inside: bool = False):
    """Fails fast, with one message, when ``path`` cannot be written.

    Creates the missing parent directories of ``path`` (not ``path`` itself: a
    destination appears only when its content is complete) and writes and
    deletes a probe file beside it, where the temporaries will go.

    Args:
        path: the destination (file, or directory for ``directory=True``).
        flag: the command-line flag that named it, for the message.
        directory: ``path`` is a directory (a SavedModel, an image folder).
        writes_inside: files are written into an existing ``path`` (image
            folders), so it must be writable too.

    Raises:
        ExportError: naming ``path``, the problem and the fix.
    """
    if directory and os.path.lexists(path) and not os.path.isdir(path):
        _fail(flag, path, "it is a file, not a directory",
              f"choose another {flag} or remove that file")
    if not directory and os.path.isdir(path):
        _fail(flag, path, "it is a directory",
              f"give a file path, e.g. {os.path.join(path, 'out' + _suffix(flag))!r}")
    _probe(flag, path, _make_parent(flag, path))
    if writes_inside and os.path.isdir(path):
        _probe(flag, path, path)


def check_replaceable_dir(export_dir: str, entries, kind: str):
    """Raises unless ``export_dir`` may be replaced by a new export of ``kind``.

    Replaceable: a missing or empty directory, or one holding only ``entries``
    (what such an export writes: an earlier one, complete or half-written) and
    temporaries. Anything else is the user's: the export replaces the whole
    directory, so it refuses rather than deleting foreign files.

    Raises:
        ExportError: ``export_dir`` is a file, or holds other files (named).
    """
    if not os.path.lexists(export_dir):
        return
    if not os.path.isdir(export_dir):
        raise ExportError(f"Cannot write {export_dir!r} (--export_dir): it is a file, not a "
                          "directory; choose another --export_dir or remove that file.")
    foreign = sorted(name for name in os.listdir(export_dir)
                     if name not in entries and not atomic_files.is_temporary(name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise ExportError(f"Cannot write {export_dir!r} (--export_dir): it holds files that "
                          f"are not part of {kind} ({shown}), and an export replaces the "
                          "whole directory; choose a new or empty --export_dir.")


def _suffix(flag: str) -> str:
    return {"--output_json": ".json", "--tflite_path": ".tflite", "--onnx_path": ".onnx",
            "--output_video": ".mp4"}.get(flag, "")


@contextlib.contextmanager
def file_with_own_name(path: str) -> Iterator[str]:
    """Yields a path with ``path``'s base name that is moved onto ``path`` on success.

    For writers that pick the format from the file extension, which a
    :func:`common.atomic_files.temporary_path` (ending in ``.partial``) would
    hide: the yielded path lies in a hidden temporary directory next to
    ``path`` (same file system, so the final move is one ``rename``). On an
    exception, or when the writer produced nothing, the directory is deleted
    and ``path`` is left as it was; a killed writer's directory is removed by
    the next writer into the same folder.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    atomic_files.remove_stale_temporaries(parent)
    holder = atomic_files.temporary_path(path)
    os.mkdir(holder)
    try:
        inner = os.path.join(holder, os.path.basename(path))
        yield inner
        if not os.path.isfile(inner):
            raise ExportError(f"Nothing was written for {path!r}.")
        atomic_files.commit_file(inner, path)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
