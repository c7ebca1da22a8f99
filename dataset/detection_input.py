"""The EfficientDet input pipeline: TFRecords → augmented, anchor-labelled batches.

``TFRecord → parse + check (dataset.detection_parser) → normalise →
[train: flip, scale jitter + crop | eval: resize and pad] → anchor targets
(common.detection.target_assigner) → batch → prefetch``, following the official
google/automl EfficientDet input pipeline (paper Sec. 5.1). Every tensor has a
static shape (the batch dimension too when ``drop_remainder=True``, the
training default), so the train step can be XLA-compiled.

Batches are ``(images, labels)``:

* ``images``: float32 ``[B, H, W, 3]``, normalised (:mod:`dataset.preprocessing`).
* ``labels``, always: ``cls_targets_{l}`` int32 ``[B, H_l, W_l, A]``
  (0-based class, -1 background, -2 ignore) and ``box_targets_{l}`` float32
  ``[B, H_l, W_l, A * 4]`` for ``l = min_level … max_level``;
  ``num_positives`` float32 ``[B]``; ``source_ids`` int64 ``[B]``;
  ``image_scales`` float32 ``[B]`` (original pixels per network-input pixel:
  multiply predicted boxes by it).
* training also: ``num_dropped_boxes`` int32 ``[B]``, boxes that the random
  crop left without area (they are not assigned; the train loop may log the
  sum). Crowd boxes are removed before augmentation when
  ``skip_crowd_during_training`` (the official default), otherwise anchors
  inside them are ignored.
* evaluation also (original-image frame): ``groundtruth_boxes`` float32
  ``[B, max_instances, 4]`` ``(ymin, xmin, ymax, xmax)`` pixels, padded with
  -1; ``groundtruth_classes`` int32 ``[B, max_instances]`` 1-based, padded
  with -1; ``groundtruth_is_crowd`` int32 (padded 0); ``groundtruth_areas``
  float32 (padded -1); ``num_groundtruth_boxes`` int32 ``[B]``;
  ``image_sizes`` int32 ``[B, 2]`` original ``(height, width)``.

The anchor geometry comes in as a target-assigner object
(:class:`common.detection.target_assigner.TargetAssigner`, usually
``TargetAssigner.from_config(model_config)``), so this package needs no model
code.

Bad records raise an error naming the record (see :mod:`dataset.detection_parser`).
"""
from __future__ import annotations

from typing import Optional, Union

import tensorflow as tf

from common.detection.anchors import AnchorSet
from common.detection.image_size import parse_image_size
from common.detection.target_assigner import TargetAssigner
from dataset import input_utils, preprocessing
from dataset.detection_augment import random_horizontal_flip, scale_jitter_crop
from dataset.detection_parser import decode_detection_record
from dataset.errors import DatasetError


def _pad(tensor, length, value):
    pad = [[0, length - tf.shape(tensor)[0]]] + [[0, 0]] * (tensor.shape.rank - 1)
    padded = tf.pad(tensor, pad, constant_values=value)
    return tf.ensure_shape(padded, [length] + tensor.shape.as_list()[1:])


class DetectionExampleProcessor:
    """Turns one serialized record into ``(image, labels)`` (module docstring).

    Args:
        image_size: ``(height, width)`` of the network input.
        is_training: augment (True) or resize-and-pad (False).
        num_classes: class ids must be in ``1 … num_classes``.
        assigner: the network's
            :class:`~common.detection.target_assigner.TargetAssigner`, or its
            :class:`~common.detection.anchors.AnchorSet` (wrapped in a default
            assigner for ``num_classes``). Its anchors must be built for
            ``image_size``.
        max_instances_per_image: padded ground-truth length; more objects in a
            record is an error.
        jitter_min, jitter_max: scale-jitter range.
        input_rand_hflip: random horizontal flip in training.
        skip_crowd_during_training: remove crowd boxes in training.
        normalization: pixel normalisation, a name of
            :data:`dataset.preprocessing.NORMALIZATIONS` (the model's ``preprocessing``).
    """

    def __init__(self, image_size, is_training, num_classes,
                 assigner: Union[TargetAssigner, AnchorSet],
                 max_instances_per_image=100, jitter_min=0.1, jitter_max=2.0,
                 input_rand_hflip=True, skip_crowd_during_training=True,
                 normalization=preprocessing.DETECTION_NORMALIZATION):
        self.image_size = parse_image_size(image_size)
        self.normalization = normalization
        self.is_training = is_training
        self.num_classes = int(num_classes)
        self.max_instances = int(max_instances_per_image)
        self.jitter = (float(jitter_min), float(jitter_max))
        self.hflip = input_rand_hflip
        self.skip_crowd = skip_crowd_during_training
        if isinstance(assigner, AnchorSet):
            # Crowd boxes that reach the assigner are ignored; with skip_crowd they are
            # already removed in augment(), which is the official "drop" behaviour.
            assigner = TargetAssigner(assigner, self.num_classes)
        if tuple(assigner.anchors.image_size) != self.image_size:
            raise ValueError(f"the target assigner's anchors are for {assigner.anchors.image_size}, "
                             f"the input size is {self.image_size}.")
        if assigner.num_classes != self.num_classes:
            raise ValueError(f"the target assigner has num_classes={assigner.num_classes}, "
                             f"the pipeline {self.num_classes}.")
        self.assigner = assigner

    def decode(self, serialized):
        """Checked, decoded record (:func:`~dataset.detection_parser.decode_detection_record`)."""
        return decode_detection_record(serialized, self.num_classes, self.max_instances)

    def augment(self, data, seed):
        """Training transform of a decoded record.

        Returns:
            ``(image [H, W, 3] float32 normalised, boxes [K, 4] network pixels,
            classes [K], is_crowd [K], num_dropped, image_scale)``.
        """
        boxes, classes, is_crowd = data["boxes"], data["classes"], data["is_crowd"]
        if self.skip_crowd:
            keep = tf.logical_not(is_crowd)
            boxes, classes, is_crowd = (tf.boolean_mask(t, keep) for t in (boxes, classes, is_crowd))
        seeds = tf.random.experimental.stateless_split(seed, 2)
        image = data["image"]
        if self.hflip:
            image, boxes = random_horizontal_flip(image, boxes, seeds[0])
        # Normalising after the crop equals normalising first (bilinear weights sum to 1).
        image, boxes, keep, image_scale = scale_jitter_crop(
            image, boxes, self.image_size, *self.jitter, seeds[1],
            window_fn=lambda pixels: preprocessing.normalize_image(pixels, self.normalization))
        num_dropped = tf.reduce_sum(tf.cast(tf.logical_not(keep), tf.int32))
        boxes, classes, is_crowd = (tf.boolean_mask(t, keep) for t in (boxes, classes, is_crowd))
        return image, boxes, classes, is_crowd, num_dropped, image_scale

    def __call__(self, serialized, seed=None):
        data = self.decode(serialized)
        if self.is_training:
            image, boxes, classes, is_crowd, num_dropped, image_scale = self.augment(data, seed)
        else:
            image, image_scale = preprocessing.preprocess_detection_image(
                data["image"], self.image_size, self.normalization)
            hw = tf.cast(data["image_size"], tf.float32)
            boxes = data["boxes"] * tf.concat([hw, hw], 0) / image_scale
            classes, is_crowd = data["classes"], data["is_crowd"]
        labels = self.assigner(boxes, classes, is_crowd)
        labels["source_ids"] = data["source_id"]
        labels["image_scales"] = tf.cast(image_scale, tf.float32)
        if self.is_training:
            labels["num_dropped_boxes"] = num_dropped
        else:
            hw = tf.cast(data["image_size"], tf.float32)
            labels.update({
                "groundtruth_boxes": _pad(data["boxes"] * tf.concat([hw, hw], 0), self.max_instances, -1.0),
                "groundtruth_classes": _pad(data["classes"], self.max_instances, -1),
                "groundtruth_is_crowd": _pad(tf.cast(data["is_crowd"], tf.int32), self.max_instances, 0),
                "groundtruth_areas": _pad(tf.cast(data["areas"], tf.float32), self.max_instances, -1.0),
                "num_groundtruth_boxes": tf.shape(data["classes"])[0],
                "image_sizes": data["image_size"],
            })
        return image, labels


def build_detection_dataset(
    file_pattern,
    image_size,
    is_training: bool,
    batch_size: int,
    *,
    num_classes: int,
    assigner: Optional[TargetAssigner] = None,
    max_instances_per_image: int = 100,
    normalization: str = preprocessing.DETECTION_NORMALIZATION,
    jitter_min: float = 0.1,
    jitter_max: float = 2.0,
    input_rand_hflip: bool = True,
    skip_crowd_during_training: bool = True,
    shuffle_buffer: int = 1024,
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
    """Builds the detection ``tf.data.Dataset`` of ``(images, labels)`` batches.

    Args:
        file_pattern: TFRecord glob, comma-separated globs, or a list.
        image_size: network input, int or ``(height, width)``.
        is_training: training augmentation + shuffling, or evaluation.
        batch_size: per-worker batch size.
        num_classes: number of classes (ids ``1 … num_classes``).
        assigner: the model's target assigner (anchors + matching), e.g.
            ``TargetAssigner.from_config(model_config)``; its anchors must be
            for ``image_size``. Default: the official anchor layout (levels
            3–7, 3 scales, ratios 1, 2, 0.5, anchor scale 4) at ``image_size``.
        max_instances_per_image: padded ground-truth length; a record with
            more objects is an error.
        jitter_min, jitter_max: scale-jitter range (training).
        input_rand_hflip: random horizontal flips (training).
        skip_crowd_during_training: drop crowd boxes in training.
        normalization: pixel normalisation (:data:`dataset.preprocessing.NORMALIZATIONS`).
        shuffle_buffer: records in the shuffle buffer (training).
        num_shards, shard_index: distributed reading (:mod:`dataset.input_utils`).
        seed: makes augmentation and order reproducible.
        deterministic: deterministic element order; default ``seed is not None``.
        cache: cache the serialized records in memory after the first epoch.
        drop_remainder: default ``is_training``; with False the batch dimension
            is ``None`` (evaluation keeps every image).
        num_parallel_calls: parallelism of the per-image map.
        private_threadpool_size: > 0 gives the pipeline its own thread pool.
        repeat: repeat forever; default ``is_training``.
        epochs: training only: yield the epoch-structured stream of these epochs
            (:class:`dataset.input_utils.EpochSpan`; exact resume) instead of one
            endless shuffled stream.

    Returns:
        A dataset of ``(images, labels)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    deterministic = input_utils.resolve_deterministic(seed, deterministic)
    drop_remainder = is_training if drop_remainder is None else drop_remainder
    repeat = is_training if repeat is None else repeat
    if assigner is None:
        assigner = TargetAssigner(AnchorSet.build(image_size), num_classes)
    processor = DetectionExampleProcessor(
        image_size, is_training, num_classes, assigner, max_instances_per_image,
        jitter_min, jitter_max, input_rand_hflip, skip_crowd_during_training, normalization)

    dataset = input_utils.processed_batches(
        file_pattern, processor, is_training, batch_size, num_shards=num_shards,
        shard_index=shard_index, seed=seed, deterministic=deterministic, cache=cache,
        shuffle_buffer=shuffle_buffer, repeat=repeat, drop_remainder=drop_remainder,
        num_parallel_calls=num_parallel_calls, epochs=epochs)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    return input_utils.with_options(dataset, deterministic, private_threadpool_size)


def detection_dataset_from_config(config, is_training: bool, batch_size: Optional[int] = None,
                                  num_shards: int = 1, shard_index: int = 0, **overrides) -> tf.data.Dataset:
    """:func:`build_detection_dataset` from an experiment config (``model``,
    ``data``, ``train``, ``eval`` sections); ``overrides`` replace arguments.

    The target assigner (anchors, classes) is built from ``config.model`` with
    :meth:`TargetAssigner.from_config`.
    """
    model, data = config.model, config.data
    pattern = data.train_file_pattern if is_training else data.val_file_pattern
    if not pattern:
        key = "data.train_file_pattern" if is_training else "data.val_file_pattern"
        raise DatasetError(f"{key} is not set; point it at TFRecords (e.g. from "
                           "dataset/make_sample_dataset.py).")
    kwargs = dict(
        num_classes=model.num_classes, assigner=TargetAssigner.from_config(model),
        max_instances_per_image=data.max_instances_per_image, normalization=model.preprocessing,
        jitter_min=data.jitter_min,
        jitter_max=data.jitter_max, input_rand_hflip=data.input_rand_hflip,
        skip_crowd_during_training=data.skip_crowd_during_training, shuffle_buffer=data.shuffle_buffer,
        num_shards=num_shards, shard_index=shard_index, seed=config.train.seed, cache=data.cache,
        num_parallel_calls=data.num_parallel_calls, private_threadpool_size=data.private_threadpool_size)
    kwargs.update(overrides)
    if batch_size is None:
        batch_size = config.train.batch_size if is_training else config.eval.batch_size
    return build_detection_dataset(pattern, model.image_size, is_training, batch_size, **kwargs)
