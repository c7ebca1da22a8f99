"""Shared plumbing of the TFRecord converters: sharded writing, skip reports,
parallel work and the common command-line options.

Outputs are complete-or-absent: shards and side files (label maps, ground-truth
JSON, reports) are written under hidden temporary names by
:mod:`common.atomic_files` and moved into place only when the whole conversion
succeeded, so a failed or killed run leaves an earlier output at the same
prefix byte-for-byte intact.
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import multiprocessing
import os
import re
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

import tensorflow as tf

from common import atomic_files
from common.progress import progress
from dataset.errors import DatasetError

logger = logging.getLogger("dataset")


def shard_paths(output_prefix: str, num_shards: int) -> List[str]:
    """``{prefix}-00000-of-0000N.tfrecord`` … for ``num_shards`` shards."""
    return [f"{output_prefix}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def shard_pattern(output_prefix: str) -> str:
    """A glob pattern matching every shard written for ``output_prefix``."""
    return f"{output_prefix}-*-of-*.tfrecord"


def check_output_path(path: str, flag: str, example: str = "train"):
    """Checks that a file can be created at ``path``, without creating anything.

    Run before any work so that a mistyped output location fails at once, with
    nothing written.

    Args:
        path: the file (or shard prefix) to be written.
        flag: the command-line option that gave ``path``, named in messages.
        example: a file name suggested when ``path`` is a directory.

    Raises:
        DatasetError: ``path`` is (or ends like) a directory, a component of
            its directory is a file, or the directory is not writable.
    """
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)) or os.path.isdir(path):
        raise DatasetError(f"{flag} {path!r} is a directory, not a file name; give a name inside it, "
                           f"e.g. {os.path.join(path, example)!r}.")
    parent = os.path.dirname(os.path.abspath(path))
    existing = parent
    while not os.path.exists(existing):  # the nearest ancestor that exists decides
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise DatasetError(f"{flag} {path!r} cannot be written: {existing!r} is a file, not a directory; "
                           f"choose another {flag} or move that file away.")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "the output directory" if existing == parent else "the directory"
        raise DatasetError(f"{flag} {path!r} cannot be written: {what} {existing!r} is not writable "
                           f"by this user; choose another {flag} or fix its permissions.")


def _make_directories(directory: str) -> List[str]:
    """``os.makedirs(directory)``; returns the directories it created, deepest last."""
    created = []
    missing = os.path.abspath(directory)
    while not os.path.exists(missing):
        created.append(missing)
        missing = os.path.dirname(missing)
    os.makedirs(directory, exist_ok=True)
    return created[::-1]


class ShardedWriter:
    """Writes records round-robin into ``num_shards`` TFRecord files, all or nothing.

    Records go to hidden temporaries (:class:`common.atomic_files.FileSet`).
    Leaving the ``with`` block normally moves every shard, and every side file
    declared in ``side_paths``, into place together; then shards of the same
    prefix with another shard count are removed (``prefix-*`` patterns would
    read them together with the new ones). Leaving it with an exception
    deletes the temporaries (and directories this writer created), so an
    earlier output at the same prefix stays as it was; a killed process's
    temporaries are removed by the next writer into the directory.

    ``paths`` lists the shards, ``count`` the records written.

    Args:
        output_prefix: shards are ``{output_prefix}-0000i-of-0000N.tfrecord``.
        num_shards: number of shards (>= 1).
        side_paths: other files committed together with the shards; each must
            be given its content with :meth:`write_side_file` inside the block.

    Raises:
        DatasetError: ``num_shards`` < 1, an output path that cannot be
            written, or a write that fails (e.g. a full disk).
    """

    def __init__(self, output_prefix: str, num_shards: int, side_paths: Sequence[str] = ()):
        if num_shards < 1:
            raise DatasetError(f"--num_shards must be >= 1, got {num_shards}.")
        check_output_path(output_prefix, "--output_prefix")
        self.output_prefix = output_prefix
        self.num_shards = num_shards
        self.paths = shard_paths(output_prefix, num_shards)
        self.side_paths = [os.path.abspath(p) for p in side_paths]
        self.count = 0
        self._writers = []
        self._files = None
        self._side_written = set()
        self._created_dirs = []

    def __enter__(self):
        try:
            for directory in sorted({os.path.dirname(os.path.abspath(p)) for p in self.paths + self.side_paths}):
                self._created_dirs += _make_directories(directory)
            self._files = atomic_files.FileSet(self.paths + self.side_paths)
            self._writers = [tf.io.TFRecordWriter(t) for t in self._files.temporaries[:self.num_shards]]
        except (OSError, tf.errors.OpError) as error:
            self._abort()
            raise DatasetError(f"--output_prefix {self.output_prefix!r}: cannot create the output files "
                               f"({_describe_error(error)}); choose another --output_prefix or fix the "
                               "directory's permissions.") from None
        return self

    def write(self, serialized: bytes):
        """Appends one serialized record to the next shard."""
        index = self.count % self.num_shards
        try:
            self._writers[index].write(serialized)
        except tf.errors.OpError as error:
            raise DatasetError(f"cannot write {self.paths[index]!r} ({_describe_error(error)}); "
                               "check free disk space and permissions.") from None
        self.count += 1

    def write_side_file(self, path: str, text: str):
        """Gives the side file ``path`` (declared in ``side_paths``) its UTF-8 ``text``."""
        temporary = self._files.temporaries[self._files.paths.index(os.path.abspath(path))]
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        self._side_written.add(os.path.abspath(path))

    def _close_writers(self) -> Optional[Exception]:
        failure = None
        for writer in self._writers:
            try:
                writer.close()
            except tf.errors.OpError as error:  # buffered data is flushed here: disk full shows now
                failure = failure or error
        self._writers = []
        return failure

    def _abort(self):
        self._close_writers()
        if self._files is not None:
            self._files.discard()
        for directory in reversed(self._created_dirs):
            try:
                os.rmdir(directory)
            except OSError:  # not empty: someone else put files there meanwhile
                break
        self._created_dirs = []

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None:
            self._abort()
            return False
        failure = self._close_writers()
        if failure is not None:
            self._abort()
            raise DatasetError(f"cannot write the shards {self.output_prefix}-* ({_describe_error(failure)}); "
                               "check free disk space and permissions.") from None
        unwritten = [p for p in self.side_paths if p not in self._side_written]
        if unwritten:
            self._abort()
            raise RuntimeError(f"ShardedWriter: side files {unwritten} were declared but never written.")
        try:
            self._files.commit()
        except OSError as error:
            self._abort()
            raise DatasetError(f"cannot move the finished shards into place at {self.output_prefix}-* "
                               f"({_describe_error(error)}); check free disk space and permissions.") from None
        self._remove_superseded_shards()
        return False

    def _remove_superseded_shards(self):
        """Deletes ``prefix-*-of-M.tfrecord`` shards with M != num_shards (an older shard set)."""
        directory, base = os.path.split(os.path.abspath(self.output_prefix))
        pattern = re.compile(re.escape(base) + r"-\d{5,}-of-(\d{5,})\.tfrecord")
        removed = collections.Counter()
        for name in sorted(os.listdir(directory)):
            match = pattern.fullmatch(name)
            if match is None or int(match.group(1)) == self.num_shards:
                continue
            try:
                os.remove(os.path.join(directory, name))
            except FileNotFoundError:
                continue
            except OSError as error:
                logger.warning("could not remove the old shard %s (%s); delete it by hand, or "
                               "'%s-*' patterns will read it too.", os.path.join(directory, name),
                               error.strerror or error, self.output_prefix)
                continue
            removed[match.group(1)] += 1
        if removed:
            sets = ", ".join(f"{count} of {base}-*-of-{total}.tfrecord" for total, count in sorted(removed.items()))
            logger.warning("removed %d shard(s) of an earlier conversion with another --num_shards (%s) from %s: "
                           "'%s-*' patterns would have read them together with the %d new shards.",
                           sum(removed.values()), sets, directory, self.output_prefix, self.num_shards)


def _describe_error(error: Exception) -> str:
    """A one-line description of an OSError or TensorFlow error."""
    if isinstance(error, OSError):
        return f"{error.strerror or error}: {error.filename!r}" if error.filename else str(error.strerror or error)
    message = getattr(error, "message", None) or str(error)
    return " ".join(message.split())


def write_text_file(path: str, text: str):
    """Replaces ``path`` with ``text`` atomically (complete or not at all), creating its directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_files.write_text(path, text)


class SkipReport:
    """Counts what a converter left out (or changed), by reason, with examples."""

    def __init__(self, max_examples: int = 5):
        self.counts = collections.Counter()
        self.examples = collections.defaultdict(list)
        self._max_examples = max_examples

    def add(self, reason: str, item: str):
        self.counts[reason] += 1
        if len(self.examples[reason]) < self._max_examples:
            self.examples[reason].append(item)

    def merge(self, entries: Iterable):
        for reason, item in entries:
            self.add(reason, item)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        return {reason: {"count": count, "examples": list(self.examples[reason])}
                for reason, count in sorted(self.counts.items())}

    def summary(self, title: str) -> str:
        if not self.counts:
            return f"{title}: none"
        lines = [f"{title}: {self.total}"]
        for reason, count in sorted(self.counts.items()):
            lines.append(f"  {count:6d}  {reason}  (e.g. {'; '.join(self.examples[reason])})")
        return "\n".join(lines)


def parallel_map(fn: Callable, items: Iterable, num_workers: int, desc: str = "converting") -> Iterator:
    """``map(fn, items)`` in input order, in ``num_workers`` processes if > 1.

    ``fn`` must be a picklable top-level function (a ``functools.partial`` of
    one is fine). On a terminal a progress bar ``desc`` counts the items.
    """
    total = len(items) if hasattr(items, "__len__") else None
    with progress(total, desc, "image") as bar:
        if num_workers <= 1:
            for result in map(fn, items):
                bar.update(1)
                yield result
            return
        context = multiprocessing.get_context("spawn")  # no forked TensorFlow state
        with context.Pool(num_workers) as pool:
            for result in pool.imap(fn, items, chunksize=16):
                bar.update(1)
                yield result


def add_common_flags(parser: argparse.ArgumentParser, detection: bool = True):
    """Adds the options every converter has."""
    parser.add_argument("--num_shards", type=int, default=8,
                        help="Number of output TFRecord files (default 8).")
    parser.add_argument("--skip_invalid", action="store_true",
                        help="Leave out invalid images/objects and report counts and reasons "
                             "instead of stopping at the first one.")
    parser.add_argument("--num_workers", type=int, default=1,
                        help="Processes used to decode and check images (default 1).")
    parser.add_argument("--report_json", default=None,
                        help="Optional path for a JSON report of written/skipped counts.")
    if detection:
        parser.add_argument("--max_instances_per_image", type=int, default=100,
                            help="More objects than this in one image is an error (default 100, "
                                 "as data.max_instances_per_image).")
        parser.add_argument("--box_tolerance_px", type=float, default=1.0,
                            help="Boxes overshooting the image by at most this many pixels are "
                                 "clipped and counted; more is an error (default 1.0).")


def setup_logging():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def run_conversion(convert: Callable[[], object], report_json: Optional[str],
                   describe: Callable[[object], str]) -> int:
    """Runs one converter for a command line.

    The exit code is 0 on success and 2 on a user-caused problem (a
    :class:`DatasetError` or a file-system error such as a permission denied),
    which is logged as one line without a traceback; the converters leave
    nothing half-written in that case. On success the summary's ``as_dict()``
    is written atomically to ``report_json`` (when given; its location is
    checked before converting) and ``describe(summary)`` is printed.
    """
    try:
        if report_json:
            check_output_path(report_json, "--report_json", example="report.json")
        summary = convert()
    except DatasetError as error:
        logger.error("%s", " ".join(str(error).split("\n")))
        return 2
    except OSError as error:
        logger.error("%s; check the path and its permissions.", _describe_error(error))
        return 2
    if report_json:
        try:
            write_text_file(report_json, json.dumps(summary.as_dict(), indent=2))
        except OSError as error:
            logger.error("the records were written, but not the report --report_json %r (%s); check the path "
                         "and its permissions.", report_json, _describe_error(error))
            return 2
    print(describe(summary))
    return 0
