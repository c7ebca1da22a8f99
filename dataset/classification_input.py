"""The EfficientNetV2 / EfficientNet input pipeline: TFRecords → augmented batches.

Training (as the official recipes): Inception-style random resized crop
(area 8–100 %, aspect ratio 3/4–4/3, up to 10 attempts, centre crop if none
fits; Szegedy et al. 2015, "Going deeper with convolutions"), resize, random
horizontal flip, optional RandAugment (:mod:`dataset.randaugment`),
normalisation, one-hot labels, optional label smoothing, then batch-level
MixUp / CutMix (:mod:`dataset.mixing`). Evaluation: :func:`~dataset.preprocessing.preprocess_classification_image`
(the official rule: center crop with padding 32 below 320 pixels, plain resize
from 320 up; V1's ``imagenet_mean_std`` always crops) and normalisation.

The strengths (``randaug_magnitude``, ``mixup_alpha``, ``cutmix_alpha``) and
``image_size`` are plain arguments so that the progressive-resizing schedule of
EfficientNetV2 (Tan & Le 2021, Sec. 4) builds one pipeline per stage.

Label smoothing can be done here (``label_smoothing``) or in the loss
(``train.label_smoothing``) — use one of the two, not both.

Batches are ``(images float32 [B, H, W, 3], labels float32 [B, num_classes])``.
Labels in the records are 0-based (:mod:`dataset.tfrecord_format`); records
with 1-based labels (ImageNet with a background class) need ``label_offset=-1``.
A label outside ``0 … num_classes - 1``, or none at all (a detection record),
is an error naming the record.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from common.detection.image_size import parse_image_size
from dataset import input_utils, preprocessing
from dataset.errors import DatasetError
from dataset.mixing import mix_batch
from dataset.randaugment import randaugment
from dataset.tfrecord_format import parse_classification_example

CLASSIFICATION_CONVERTER = "dataset/create_classification_tfrecord.py"


def _is_jpeg(encoded):
    return tf.equal(tf.strings.substr(encoded, 0, 3), b"\xff\xd8\xff")


def _image_shape(encoded):
    return tf.cond(_is_jpeg(encoded), lambda: tf.io.extract_jpeg_shape(encoded, tf.int32),
                   lambda: tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False)))


def decode_random_crop(encoded: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Inception-style random crop, decoding only the window for JPEGs.

    Returns:
        uint8 ``[h', w', 3]`` crop, or a centre crop covering the whole shorter
        side's square when no window satisfied the constraints.
    """
    shape = _image_shape(encoded)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.1, aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0), area_range=(0.08, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    failed = tf.reduce_all(tf.equal(size[:2], shape[:2]))
    side = tf.minimum(shape[0], shape[1])
    begin = tf.where(failed, tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, 0]), begin)
    size = tf.where(failed, tf.stack([side, side, -1]), size)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])

    def jpeg():
        return tf.io.decode_and_crop_jpeg(encoded, window, channels=3)

    def other():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return image[begin[0]:begin[0] + size[0], begin[1]:begin[1] + size[1]]

    return tf.ensure_shape(tf.cond(_is_jpeg(encoded), jpeg, other), [None, None, 3])


class ClassificationExampleProcessor:
    """One serialized record → ``(image, one-hot label)`` (module docstring)."""

    def __init__(self, image_size, is_training, num_classes, preprocessing_method="scale_128",
                 randaug_magnitude=None, randaug_num_layers=2, label_smoothing=0.0, label_offset=0,
                 input_rand_hflip=True):
        if preprocessing_method not in preprocessing.CLASSIFICATION_METHODS:
            raise ValueError(f"preprocessing {preprocessing_method!r} is not one of "
                             f"{preprocessing.CLASSIFICATION_METHODS}.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        self.image_size = parse_image_size(image_size)
        self.is_training = is_training
        self.num_classes = int(num_classes)
        self.method = preprocessing_method
        self.randaug_magnitude = randaug_magnitude
        self.randaug_num_layers = int(randaug_num_layers)
        self.label_smoothing = float(label_smoothing)
        self.label_offset = int(label_offset)
        self.hflip = input_rand_hflip

    def label(self, parsed):
        label = parsed["label"] + self.label_offset
        record = tf.strings.join(["file '", parsed["filename"], "' (class text '", parsed["text"], "')"])
        # -1 is the parse default: the record has no image/class/label at all,
        # typically a detection record. Exactly one of the two checks can fail.
        missing = tf.equal(parsed["label"], -1)
        has_label = tf.debugging.Assert(tf.logical_not(missing), [
            "no image/class/label (a detection record?) in record", record,
            f"- classification needs records from {CLASSIFICATION_CONVERTER}"])
        check = tf.debugging.Assert(
            tf.logical_or(missing, tf.logical_and(label >= 0, label < self.num_classes)),
            ["image/class/label (after label_offset", self.label_offset, ") is", label,
             f"outside 0..{self.num_classes - 1} in record", record,
             "- labels are 0-based; fix num_classes, or set label_offset=-1 for 1-based records"])
        with tf.control_dependencies([has_label, check, input_utils.check_image_bytes(parsed["encoded"], record)]):
            one_hot = tf.one_hot(tf.cast(label, tf.int32), self.num_classes, dtype=tf.float32)
        if self.label_smoothing:
            one_hot = one_hot * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        return one_hot

    def __call__(self, serialized, seed=None):
        parsed = parse_classification_example(serialized)
        label = self.label(parsed)
        with tf.control_dependencies([label]):
            encoded = tf.identity(parsed["encoded"])
        if not self.is_training:
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
            image = tf.ensure_shape(image, [None, None, 3])
            return preprocessing.preprocess_classification_image(image, self.image_size, self.method), label
        seeds = tf.random.experimental.stateless_split(seed, 3)
        image = tf.image.resize(decode_random_crop(encoded, seeds[0]), self.image_size)
        image = tf.ensure_shape(image, [*self.image_size, 3])
        if self.hflip:
            image = tf.image.stateless_random_flip_left_right(image, seeds[1])
        if self.randaug_magnitude:
            image = randaugment(tf.clip_by_value(image, 0.0, 255.0), self.randaug_magnitude,
                                self.randaug_num_layers, seeds[2])
        return preprocessing.normalize_classification_image(image, self.method), label


def build_classification_dataset(
    file_pattern,
    image_size,
    is_training: bool,
    batch_size: int,
    *,
    num_classes: int,
    preprocessing: str = "scale_128",
    randaug_magnitude: Optional[float] = None,
    randaug_num_layers: int = 2,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    label_smoothing: float = 0.0,
    label_offset: int = 0,
    input_rand_hflip: bool = True,
    shuffle_buffer: int = 4096,
    num_shards: int = 1,
    shard_index: int = 0,
    seed: Optional[int] = None,
    deterministic: Optional[bool] = None,
    cache: bool = False,
    drop_remainder: Optional[bool] = None,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    private_threadpool_size: int = 0,
    repeat: Optional[bool] = None,
    epochs: Optional[input_utils.EpochSpan] = None,
) -> tf.data.Dataset:
    """Builds the classification ``tf.data.Dataset`` of ``(images, labels)`` batches.

    Args:
        file_pattern: TFRecord glob, comma-separated globs, or a list.
        image_size: output size, int or ``(height, width)``; may differ per
            call (progressive resizing).
        is_training: augmentation + shuffling, or evaluation.
        batch_size: per-worker batch size.
        num_classes: size of the one-hot labels.
        preprocessing: ``scale_128`` (EfficientNetV2), ``imagenet_mean_std`` (V1) or
            ``scale_127`` (Lite).
        randaug_magnitude: RandAugment strength (10 = official maximum
            level); ``None``/0 disables it.
        randaug_num_layers: RandAugment operations per image.
        mixup_alpha: MixUp Beta parameter; 0 disables it.
        cutmix_alpha: CutMix Beta parameter; 0 disables it.
        label_smoothing: smoothing applied to the one-hot labels here.
        label_offset: added to the stored labels (``-1`` for 1-based records).
        input_rand_hflip: random horizontal flips (training).
        shuffle_buffer: records in the shuffle buffer (training).
        num_shards, shard_index: distributed reading (:mod:`dataset.input_utils`).
        seed: makes augmentation and order reproducible.
        deterministic: deterministic element order; default ``seed is not None``.
        cache: cache the serialized records in memory after the first epoch.
        drop_remainder: default ``is_training``.
        num_parallel_calls: parallelism of the per-image map.
        private_threadpool_size: > 0 gives the pipeline its own thread pool.
        repeat: repeat forever; default ``is_training``.
        epochs: training only: yield the epoch-structured stream of these epochs
            (:class:`dataset.input_utils.EpochSpan`; exact resume) instead of one
            endless shuffled stream.

    Returns:
        A dataset of ``(images [B, H, W, 3] float32, labels [B, num_classes] float32)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    deterministic = input_utils.resolve_deterministic(seed, deterministic)
    drop_remainder = is_training if drop_remainder is None else drop_remainder
    repeat = is_training if repeat is None else repeat
    processor = ClassificationExampleProcessor(
        image_size, is_training, num_classes, preprocessing, randaug_magnitude, randaug_num_layers,
        label_smoothing, label_offset, input_rand_hflip)

    dataset = input_utils.processed_batches(
        file_pattern, processor, is_training, batch_size, num_shards=num_shards,
        shard_index=shard_index, seed=seed, deterministic=deterministic, cache=cache,
        shuffle_buffer=shuffle_buffer, repeat=repeat, drop_remainder=drop_remainder,
        num_parallel_calls=num_parallel_calls, epochs=epochs)
    if is_training and (mixup_alpha > 0 or cutmix_alpha > 0):
        if epochs is not None:
            batch_seeds = input_utils.epoch_batch_seeds(seed, epochs, batch_size)
        else:
            batch_seeds = input_utils.element_seeds(None if seed is None else seed + 1)
        dataset = tf.data.Dataset.zip((dataset, batch_seeds))
        dataset = dataset.map(lambda batch, s: mix_batch(batch[0], batch[1], mixup_alpha, cutmix_alpha, s),
                              num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    return input_utils.with_options(dataset, deterministic, private_threadpool_size)


def classification_dataset_from_config(config, is_training: bool, image_size=None, batch_size: Optional[int] = None,
                                       num_shards: int = 1, shard_index: int = 0, **overrides) -> tf.data.Dataset:
    """:func:`build_classification_dataset` from an experiment config.

    ``image_size`` defaults to ``model.train_image_size`` (training) or
    ``model.image_size``; the per-stage strengths of progressive resizing
    (``randaug_magnitude``, ``mixup_alpha``, ``cutmix_alpha``) are passed as
    ``overrides``. Label smoothing is left to the loss (``train.label_smoothing``).
    """
    model, data = config.model, config.data
    pattern = data.train_file_pattern if is_training else data.val_file_pattern
    if not pattern:
        key = "data.train_file_pattern" if is_training else "data.val_file_pattern"
        raise DatasetError(f"{key} is not set; point it at TFRecords (e.g. from "
                           "dataset/make_sample_dataset.py).")
    if image_size is None:
        image_size = model.train_image_size if is_training else model.image_size
    if batch_size is None:
        batch_size = config.train.batch_size if is_training else config.eval.batch_size
    kwargs = dict(num_classes=model.num_classes, preprocessing=model.preprocessing,
                  input_rand_hflip=data.input_rand_hflip, shuffle_buffer=data.shuffle_buffer,
                  num_shards=num_shards, shard_index=shard_index, seed=config.train.seed, cache=data.cache,
                  num_parallel_calls=data.num_parallel_calls, private_threadpool_size=data.private_threadpool_size)
    kwargs.update(overrides)
    return build_classification_dataset(pattern, image_size, is_training, batch_size, **kwargs)
