"""Detection experiment: data, task and COCO evaluation for the training runtime."""
import numpy as np
import tensorflow as tf

from common.export.label_map import run_label_map
from common.progress import progress
from common.training.loop import TrainingStage
from dataset.input_utils import EpochSpan
from dataset.preprocessing import DETECTION_NORMALIZATION, denormalize_image
from dataset.record_check import RecordChecker
from efficientdet.coco_evaluation import CocoEvaluator
from efficientdet.task import DetectionTask


class DetectionExperiment:
    """Everything the runtime needs that is specific to detection.

    Args:
        config: the resolved ``ExperimentConfig``.
        distribution: the cross-replica hook (gives ``num_shards`` / ``shard_index``).
    """

    def __init__(self, config, distribution):
        self.config = config
        self.distribution = distribution
        self.task = DetectionTask(config.model)
        self.records = RecordChecker("detection")

    def _dataset(self, is_training, batch_size, seed=None, epochs=None):
        """The config's train/val pipeline, this process's shard."""
        from dataset.detection_input import detection_dataset_from_config

        return detection_dataset_from_config(
            self.config, is_training, batch_size=batch_size,
            num_shards=self.distribution.num_shards, shard_index=self.distribution.shard_index,
            seed=seed, epochs=epochs)

    def stages(self, model, num_epochs, batch_size, seed=None, *, batches_per_epoch):
        """Detection trains in one stage at the model's image size.

        ``batches_per_epoch``: micro-batches of ``batch_size`` this process's
        pipeline yields per epoch (the stream is epoch-structured for exact resume).
        """
        del model

        def make(first_epoch=0, skip_batches=0):
            span = EpochSpan.of_batches(first_epoch, num_epochs, batches_per_epoch, batch_size, skip_batches)
            return self._dataset(True, batch_size, seed, span)

        return [TrainingStage(0, 0, num_epochs, make)]

    def eval_dataset(self, batch_size):
        return self._dataset(False, batch_size)

    def evaluate(self, model, dataset, max_steps=None, results_json=None, preview=None):
        """COCO metrics of ``model`` (weights already in place) on ``dataset``.

        ``preview``: optional callable that receives, after the last batch,
        uint8 ``[N, H', 2W', 3]`` pictures of the first ``eval.num_pictures``
        images (ground truth left, detections right; see :func:`preview_pictures`),
        for TensorBoard and ``model_dir/eval_pictures``.
        """
        task = self.task

        @tf.function
        def predict(images, image_scales):
            outputs = model(images, training=False)
            return task.detect(outputs, image_scales)

        label_map, _ = run_label_map(self.config, first_id=1)
        evaluator = CocoEvaluator(self.config.data.val_json_file, label_map)
        build_gt = not self.config.data.val_json_file
        pictures = []
        with progress(max_steps, "evaluation", "batch", is_chief=self.distribution.is_chief) as bar:
            for step, (images, labels) in enumerate(dataset):
                if max_steps is not None and step >= max_steps:
                    break
                bar.update(1)
                detections = predict(images, labels["image_scales"])
                wanted = self.config.eval.num_pictures - sum(len(p) for p in pictures)
                if preview is not None and wanted > 0:
                    pictures.append(preview_pictures(
                        images, labels, detections, max_images=wanted, label_map=label_map,
                        min_side=PICTURE_SIDE, normalization=self.config.model.preprocessing))
                groundtruth = None
                if build_gt:
                    groundtruth = {
                        "boxes": labels["groundtruth_boxes"].numpy(),
                        "classes": labels["groundtruth_classes"].numpy(),
                        "is_crowd": labels["groundtruth_is_crowd"].numpy(),
                        "areas": labels["groundtruth_areas"].numpy(),
                        "image_sizes": labels["image_sizes"].numpy(),
                    }
                evaluator.add(
                    labels["source_ids"].numpy(),
                    detections.boxes.numpy(),
                    detections.scores.numpy(),
                    detections.classes.numpy(),
                    detections.num_detections.numpy(),
                    groundtruth,
                )
        if pictures:
            preview(np.concatenate(pictures))
        if self.distribution.num_shards > 1:
            # Every process evaluated its shard; all compute the metrics on the union.
            evaluator.merge(self.distribution.allgather_object(evaluator.state()))
        metrics = evaluator.result(results_json if self.distribution.is_chief else None)
        metrics["num_images"] = len(evaluator.images) or len(
            {d["image_id"] for d in evaluator.detections})
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v)
                for k, v in metrics.items()}


# Evaluation pictures: detections drawn from this score (as model_inspect.py
# --runmode infer's default), files enlarged to at least this side.
PICTURE_MIN_SCORE = 0.4
PICTURE_SIDE = 384


def preview_pictures(images, labels, detections, max_images=4, min_score=PICTURE_MIN_SCORE,
                     label_map=None, min_side=0, normalization=DETECTION_NORMALIZATION):
    """Side-by-side pictures of an evaluation batch in the network-input frame.

    Args:
        images: normalized float ``[B, H, W, 3]`` network inputs.
        labels: the evaluation labels (``groundtruth_boxes`` / ``groundtruth_classes``
            in original pixels, padded with -1; ``image_scales`` ``[B]``).
        detections: post-processed detections in original pixels.
        max_images: pictures made (the first of the batch).
        min_score: detections below this are not drawn.
        label_map: optional ``{class_id: name}`` for the labels drawn.
        min_side: the pictures are enlarged by the smallest whole factor ``z``
            that makes their shorter side at least this (nearest neighbour, so
            small network inputs stay legible); 0 keeps the network size.
        normalization: how ``images`` were normalised (undone for the pictures).

    Returns:
        uint8 ``[N, zH, 2zW, 3]``: ground truth left (class names), detections
        (``class: score``) right.
    """
    from common.export.visualize import draw_detections

    count = min(max_images, int(images.shape[0]))
    pixels = denormalize_image(images[:count].numpy(), normalization)
    zoom = max(1, -(-int(min_side) // min(pixels.shape[1:3]))) if count else 1
    if zoom > 1:
        pixels = pixels.repeat(zoom, axis=1).repeat(zoom, axis=2)
    scales = labels["image_scales"].numpy()[:count] / zoom
    gt_boxes = labels["groundtruth_boxes"].numpy()[:count]
    gt_classes = labels["groundtruth_classes"].numpy()[:count].astype(np.int64)
    boxes = detections.boxes.numpy()[:count]
    scores = detections.scores.numpy()[:count]
    classes = detections.classes.numpy()[:count].astype(np.int64)
    pictures = []
    for i in range(count):
        real = gt_classes[i] > 0
        truth, _ = draw_detections(pixels[i], gt_boxes[i][real] / scales[i], None,
                                   gt_classes[i][real], label_map)
        found, _ = draw_detections(pixels[i], boxes[i] / scales[i], scores[i], classes[i],
                                   label_map, min_score=min_score)
        pictures.append(np.concatenate([np.asarray(truth), np.asarray(found)], axis=1))
    return np.stack(pictures)
