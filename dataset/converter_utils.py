"""Shared plumbing of the TFRecord converters: sharded writing, skip reports,
parallel work and the common command-line options."""
from __future__ import annotations

import argparse
import collections
import json
import logging
import multiprocessing
import os
from typing import Callable, Iterable, Iterator, List, Optional

import tensorflow as tf

from dataset.errors import DatasetError

logger = logging.getLogger("dataset")


def shard_paths(output_prefix: str, num_shards: int) -> List[str]:
    """``{prefix}-00000-of-0000N.tfrecord`` … for ``num_shards`` shards."""
    return [f"{output_prefix}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def shard_pattern(output_prefix: str) -> str:
    """A glob pattern matching every shard written for ``output_prefix``."""
    return f"{output_prefix}-*-of-*.tfrecord"


class ShardedWriter:
    """Writes records round-robin into ``num_shards`` TFRecord files.

    Use as a context manager; ``paths`` lists the files, ``count`` the records.
    """

    def __init__(self, output_prefix: str, num_shards: int):
        if num_shards < 1:
            raise ValueError(f"--num_shards must be >= 1, got {num_shards}.")
        parent = os.path.dirname(os.path.abspath(output_prefix))
        os.makedirs(parent, exist_ok=True)
        self.paths = shard_paths(output_prefix, num_shards)
        self.count = 0
        self._writers = []

    def __enter__(self):
        self._writers = [tf.io.TFRecordWriter(path) for path in self.paths]
        return self

    def write(self, serialized: bytes):
        self._writers[self.count % len(self._writers)].write(serialized)
        self.count += 1

    def __exit__(self, *exc):
        for writer in self._writers:
            writer.close()
        return False


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


def parallel_map(fn: Callable, items: Iterable, num_workers: int) -> Iterator:
    """``map(fn, items)`` in input order, in ``num_workers`` processes if > 1.

    ``fn`` must be a picklable top-level function (a ``functools.partial`` of
    one is fine).
    """
    if num_workers <= 1:
        yield from map(fn, items)
        return
    context = multiprocessing.get_context("spawn")  # no forked TensorFlow state
    with context.Pool(num_workers) as pool:
        yield from pool.imap(fn, items, chunksize=16)


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
    """Runs one converter for a command line: the exit code is 0 on success and 2
    on a :class:`DatasetError` (logged as one message); on success the summary is
    written to ``report_json`` (when given, via the summary's ``as_dict()``) and
    ``describe(summary)`` is printed."""
    try:
        summary = convert()
    except DatasetError as error:
        logger.error("%s", error)
        return 2
    if report_json:
        with open(report_json, "w") as handle:
            json.dump(summary.as_dict(), handle, indent=2)
    print(describe(summary))
    return 0
