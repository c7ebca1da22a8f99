"""tf.data plumbing shared by the detection and classification pipelines:
file listing, distributed sharding, interleaved reading, per-element seeds and
dataset options.

Sharding (the runtime passes ``num_shards`` = number of workers and
``shard_index`` = this worker): when there are at least as many files as
workers, each worker reads every ``num_shards``-th file of the sorted list
(file-level sharding, no wasted reads); otherwise every worker reads all files
in a fixed order and keeps every ``num_shards``-th record.

Randomness: each element is paired with its own seed drawn from
``tf.data.Dataset.random(seed)``, and all augmentation uses stateless random
ops on that seed. With a ``seed`` and ``deterministic=True`` a pipeline is
therefore reproducible run to run regardless of parallelism; without a seed it
runs with non-deterministic ordering for speed.
"""
from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Union

import tensorflow as tf

from dataset.errors import DatasetError

logger = logging.getLogger("dataset")
FilePattern = Union[str, Sequence[str]]


def list_files(file_pattern: FilePattern) -> List[str]:
    """Sorted files matching a glob, a comma-separated list of globs, or a list.

    Raises:
        DatasetError: if nothing matches (names the pattern).
    """
    patterns = file_pattern.split(",") if isinstance(file_pattern, str) else list(file_pattern)
    files = []
    for pattern in patterns:
        pattern = pattern.strip()
        if not pattern:
            continue
        matched = tf.io.gfile.glob(pattern)
        if not matched:
            raise DatasetError(f"no files match the file pattern {pattern!r}; check data.train_file_pattern / "
                               "data.val_file_pattern (make them with the dataset/create_*_tfrecord.py tools "
                               "or dataset/make_sample_dataset.py).")
        files.extend(matched)
    if not files:
        raise DatasetError(f"the file pattern {file_pattern!r} is empty.")
    return sorted(set(files))


def resolve_deterministic(seed: Optional[int], deterministic: Optional[bool]) -> bool:
    """``deterministic`` if given, else ``True`` exactly when a seed is given."""
    return (seed is not None) if deterministic is None else bool(deterministic)


def read_records(
    file_pattern: FilePattern,
    is_training: bool,
    num_shards: int = 1,
    shard_index: int = 0,
    seed: Optional[int] = None,
    deterministic: bool = False,
    cycle_length: int = 16,
) -> tf.data.Dataset:
    """Serialized records of this worker's shard, interleaved over files.

    Args:
        file_pattern: see :func:`list_files`.
        is_training: shuffle the file order (per epoch) when sharding by file.
        num_shards: number of workers.
        shard_index: this worker, ``0 … num_shards - 1``.
        seed: file-order seed.
        deterministic: deterministic interleave order.
        cycle_length: files read concurrently.

    Returns:
        A dataset of scalar strings.
    """
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} must be in [0, num_shards={num_shards}).")
    files = list_files(file_pattern)
    by_record = num_shards > 1 and len(files) < num_shards
    if num_shards > 1 and not by_record:
        if len(files) % num_shards:
            logger.info("%d files over %d workers: shards differ by up to one file", len(files), num_shards)
        files = files[shard_index::num_shards]
    elif by_record:
        logger.info("only %d files for %d workers: sharding by record (every worker reads all files)",
                    len(files), num_shards)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if is_training and not by_record and len(files) > 1:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path),
        cycle_length=max(1, min(cycle_length, len(files))),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic or by_record,
    )
    if by_record:
        dataset = dataset.shard(num_shards, shard_index)
    return dataset


def element_seeds(seed: Optional[int]) -> tf.data.Dataset:
    """An endless dataset of int64 ``[2]`` seeds for stateless random ops."""
    return tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)


def processed_batches(
    file_pattern: FilePattern,
    processor,
    is_training: bool,
    batch_size: int,
    *,
    num_shards: int,
    shard_index: int,
    seed: Optional[int],
    deterministic: bool,
    cache: bool,
    shuffle_buffer: int,
    repeat: bool,
    drop_remainder: bool,
    num_parallel_calls: int,
) -> tf.data.Dataset:
    """The record → example → batch chain shared by the input pipelines.

    Reads this shard's records (:func:`read_records`), optionally caches them,
    shuffles (training), repeats, maps ``processor`` — called as
    ``processor(record, seed)`` with a per-element seed from
    :func:`element_seeds` when training, ``processor(record)`` otherwise —
    and batches. Batch-level steps, prefetch and :func:`with_options` are
    left to the caller.
    """
    dataset = read_records(file_pattern, is_training, num_shards, shard_index, seed, deterministic)
    if cache:
        dataset = dataset.cache()
    if is_training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    if is_training:
        dataset = tf.data.Dataset.zip((dataset, element_seeds(seed)))
    dataset = dataset.map(processor, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    return dataset.batch(batch_size, drop_remainder=drop_remainder)


def with_options(dataset: tf.data.Dataset, deterministic: bool, private_threadpool_size: int = 0) -> tf.data.Dataset:
    """Applies ordering determinism and the optional private thread pool."""
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    if private_threadpool_size > 0:
        options.threading.private_threadpool_size = private_threadpool_size
    return dataset.with_options(options)


def check_image_bytes(encoded: tf.Tensor, record: tf.Tensor) -> tf.Operation:
    """An assert that ``encoded`` starts like a JPEG, PNG, GIF or BMP file.

    ``tf.io.decode_image``'s own error does not say which record failed; this
    one names ``record`` (e.g. source id and file name).
    """
    head = tf.strings.substr(encoded, 0, 4)
    known = tf.reduce_any(tf.stack([
        tf.equal(tf.strings.substr(encoded, 0, 3), b"\xff\xd8\xff"),
        tf.equal(head, b"\x89PNG"),
        tf.equal(head, b"GIF8"),
        tf.equal(tf.strings.substr(encoded, 0, 2), b"BM"),
    ]))
    return tf.debugging.Assert(known, [
        "image/encoded is not a JPEG/PNG/GIF/BMP image in record", record,
        "- re-create the record with the dataset/create_*_tfrecord.py converters"])
