"""tf.data plumbing shared by the detection and classification pipelines:
file listing, distributed sharding, interleaved reading, per-element seeds and
dataset options.

Sharding (the runtime passes ``num_shards`` = number of workers and
``shard_index`` = this worker): when there are at least as many files as
workers, each worker reads every ``num_shards``-th file of the sorted list
(file-level sharding, no wasted reads); otherwise every worker reads all files
in a fixed order and keeps every ``num_shards``-th record.

Randomness: each element is paired with its own seed, and all augmentation
uses stateless random ops on that seed. With a ``seed`` and
``deterministic=True`` a pipeline is therefore reproducible run to run
regardless of parallelism; without a seed it runs with non-deterministic
ordering for speed.

Training streams are cut into epochs (:class:`EpochSpan`): the file order,
the record shuffle and every element's augmentation seed of epoch ``e`` are
functions of ``(seed, e)`` and of the element's position in the epoch only. A
run resumed at epoch ``e`` after ``k`` consumed examples therefore rebuilds
exactly the stream an uninterrupted run would have read from that point, by
skipping ``k`` serialized records (no decoding) instead of replaying earlier
epochs.
"""
from __future__ import annotations

import dataclasses
import logging
import random
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
    order_key: Optional[tf.Tensor] = None,
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
        order_key: int64 scalar; when given (training), the file order is a
            stateless permutation keyed by it instead of a seeded shuffle.

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
        if order_key is not None:
            dataset = permuted_blocks(dataset, len(files), order_key, salt=0)
        else:
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


@dataclasses.dataclass(frozen=True)
class EpochSpan:
    """The part of an epoch-structured training stream that one pipeline yields.

    Attributes:
        first_epoch: the first epoch (0-based) yielded.
        end_epoch: one past the last epoch yielded.
        examples_per_epoch: examples this pipeline yields per epoch (this
            worker's optimizer steps x micro-batches x replicas fed x batch size).
        skip_examples: examples of ``first_epoch`` already consumed before a resume.
    """

    first_epoch: int
    end_epoch: int
    examples_per_epoch: int
    skip_examples: int = 0

    @classmethod
    def of_batches(cls, first_epoch, end_epoch, batches_per_epoch, batch_size, skip_batches=0):
        """The span counted in micro-batches of ``batch_size``."""
        return cls(first_epoch, end_epoch, batches_per_epoch * batch_size,
                   skip_batches * batch_size)

    def __post_init__(self):
        if not 0 <= self.first_epoch < self.end_epoch:
            raise ValueError(f"EpochSpan needs 0 <= first_epoch < end_epoch, got "
                             f"{self.first_epoch}, {self.end_epoch}.")
        if self.examples_per_epoch < 1:
            raise ValueError(f"examples_per_epoch must be >= 1, got {self.examples_per_epoch}.")
        if not 0 <= self.skip_examples < self.examples_per_epoch:
            raise ValueError(f"skip_examples must be in [0, {self.examples_per_epoch}), got "
                             f"{self.skip_examples}.")


def epoch_seed(seed, epoch):
    """int64 seed of ``epoch`` (a Python int or scalar tensor) for run seed ``seed``.

    Distinct epochs get distinct seeds; the same ``(seed, epoch)`` always the same one.
    """
    epoch = tf.cast(epoch, tf.int64)
    return (tf.constant(seed, tf.int64) * 1_000_003 + epoch * 7_919 + 17) % 2_147_483_647


def permuted_blocks(dataset: tf.data.Dataset, block_size: int, key, salt: int) -> tf.data.Dataset:
    """Shuffles ``dataset`` within consecutive blocks of ``block_size`` elements.

    Block ``b`` is permuted by stateless random numbers on ``[key + salt, b]``:
    the order depends on ``key`` and the position only, never on earlier
    iterations (``Dataset.shuffle`` takes no tensor seed when the global seed is 0).
    """
    def permute(index, block):
        noise = tf.random.stateless_uniform([tf.shape(block)[0]],
                                            seed=tf.stack([key + salt, index]))
        return tf.gather(block, tf.argsort(noise))

    return dataset.batch(block_size).enumerate().map(permute).unbatch()


def _stream_seed(seed: Optional[int]) -> int:
    """The run seed of an epoch-structured stream (a random one when ``seed`` is None)."""
    return random.SystemRandom().randrange(2**31) if seed is None else int(seed)


def epoch_batch_seeds(seed: Optional[int], span: EpochSpan, batch_size: int,
                      salt: int = 1) -> tf.data.Dataset:
    """int64 ``[2]`` seeds for batch-level augmentation (mixup / cutmix), one per batch
    of an epoch-structured stream: batch ``b`` of epoch ``e`` gets
    ``[epoch_seed + salt, b]`` whatever came before it."""
    if span.examples_per_epoch % batch_size or span.skip_examples % batch_size:
        raise ValueError("an epoch-structured stream needs whole batches per epoch and skip.")
    per_epoch = span.examples_per_epoch // batch_size
    first = span.first_epoch * per_epoch + span.skip_examples // batch_size
    base = _stream_seed(seed)
    return tf.data.Dataset.range(first, span.end_epoch * per_epoch).map(
        lambda g: tf.stack([epoch_seed(base, g // per_epoch) + salt, g % per_epoch]))


def _epoch_stream(file_pattern, num_shards, shard_index, seed, deterministic, cache,
                  shuffle_buffer, span: EpochSpan) -> tf.data.Dataset:
    """``(record, seed [2])`` pairs of the epochs in ``span`` (see the module docstring)."""
    base = _stream_seed(seed)
    cached = None
    if cache:
        # The cache holds the records in the first epoch's file order; later epochs
        # reshuffle them in the buffer only (reading the files again would defeat it).
        cached = read_records(file_pattern, True, num_shards, shard_index, None, deterministic,
                              order_key=epoch_seed(base, 0)).cache()

    def one_epoch(epoch):
        key = epoch_seed(base, epoch)
        records = cached if cached is not None else read_records(
            file_pattern, True, num_shards, shard_index, None, deterministic, order_key=key)
        # Each pass over the data is permuted on its own (an epoch longer than the
        # data makes several passes): every example once per pass, never a
        # duplicate drawn from a block that spans two passes.
        # At most examples_per_epoch passes are needed; bounded, empty data ends the
        # stream (a clear out-of-data error) instead of looping forever.
        passes = tf.data.Dataset.range(span.examples_per_epoch).flat_map(
            lambda index: permuted_blocks(records, max(1, shuffle_buffer), key, salt=1 + index))
        records = passes.take(span.examples_per_epoch)
        positions = tf.data.Dataset.range(span.examples_per_epoch)
        return tf.data.Dataset.zip((records, positions.map(lambda i: tf.stack([key, i]))))

    stream = tf.data.Dataset.range(span.first_epoch, span.end_epoch).flat_map(one_epoch)
    return stream.skip(span.skip_examples)


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
    epochs: Optional[EpochSpan] = None,
) -> tf.data.Dataset:
    """The record → example → batch chain shared by the input pipelines.

    Reads this shard's records (:func:`read_records`), optionally caches them,
    shuffles (training), repeats, maps ``processor`` — called as
    ``processor(record, seed)`` with a per-element seed from
    :func:`element_seeds` when training, ``processor(record)`` otherwise —
    and batches. Batch-level steps, prefetch and :func:`with_options` are
    left to the caller.

    With ``epochs`` (training only) the stream is epoch-structured instead
    (:class:`EpochSpan`): it yields exactly the examples of those epochs, the
    first one without its ``skip_examples`` already consumed, and ``repeat``
    is ignored.
    """
    if epochs is not None:
        if not is_training:
            raise ValueError("epochs= is for training streams only.")
        if epochs.examples_per_epoch % batch_size:
            raise ValueError(f"examples_per_epoch {epochs.examples_per_epoch} is not a multiple "
                             f"of the batch size {batch_size}.")
        dataset = _epoch_stream(file_pattern, num_shards, shard_index, seed, deterministic, cache,
                                shuffle_buffer, epochs)
        dataset = dataset.map(processor, num_parallel_calls=num_parallel_calls,
                              deterministic=deterministic)
        return dataset.batch(batch_size, drop_remainder=True)
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
