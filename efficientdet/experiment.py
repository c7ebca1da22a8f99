"""Detection experiment: data, task and COCO evaluation for the training runtime."""
import numpy as np
import tensorflow as tf

from common.training.loop import TrainingStage
from efficientdet.coco_evaluation import CocoEvaluator
from efficientdet.task import DetectionTask


class DetectionExperiment:
    """Everything the runtime needs that is specific to detection.

    Args:
        config: the resolved ``ExperimentConfig``.
        distribution: the cross-replica hook (gives ``num_shards`` / ``shard_index``).
    """

    primary_metric = "AP"

    def __init__(self, config, distribution):
        self.config = config
        self.distribution = distribution
        self.task = DetectionTask(config.model)

    def _dataset(self, file_pattern, is_training, batch_size, seed=None):
        from dataset.detection_input import build_detection_dataset

        model, data = self.config.model, self.config.data
        return build_detection_dataset(
            file_pattern,
            image_size=model.image_size,
            is_training=is_training,
            batch_size=batch_size,
            min_level=model.min_level,
            max_level=model.max_level,
            num_scales=model.num_scales,
            aspect_ratios=model.aspect_ratios,
            anchor_scale=model.anchor_scale,
            num_classes=model.num_classes,
            max_instances_per_image=data.max_instances_per_image,
            jitter_min=data.jitter_min,
            jitter_max=data.jitter_max,
            input_rand_hflip=data.input_rand_hflip,
            skip_crowd_during_training=data.skip_crowd_during_training,
            shuffle_buffer=data.shuffle_buffer,
            num_shards=self.distribution.num_shards,
            shard_index=self.distribution.shard_index,
            seed=seed,
            cache=data.cache,
            private_threadpool_size=data.private_threadpool_size,
        )

    def stages(self, model, num_epochs, batch_size, seed=None):
        """Detection trains in one stage at the model's image size."""
        del model
        pattern = self.config.data.train_file_pattern
        return [TrainingStage(0, 0, num_epochs,
                              lambda: self._dataset(pattern, True, batch_size, seed))]

    def eval_dataset(self, batch_size):
        return self._dataset(self.config.data.val_file_pattern, False, batch_size)

    def evaluate(self, model, dataset, max_steps=None, results_json=None):
        """COCO metrics of ``model`` (weights already in place) on ``dataset``."""
        task = self.task

        @tf.function
        def predict(images, image_scales):
            outputs = model(images, training=False)
            return task.detect(outputs, image_scales)

        evaluator = CocoEvaluator(self.config.data.val_json_file)
        build_gt = not self.config.data.val_json_file
        for step, (images, labels) in enumerate(dataset):
            if max_steps is not None and step >= max_steps:
                break
            detections = predict(images, labels["image_scales"])
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
        if self.distribution.num_shards > 1:
            # Every process evaluated its shard; all compute the metrics on the union.
            evaluator.merge(self.distribution.allgather_object(evaluator.state()))
        metrics = evaluator.result(results_json if self.distribution.is_chief else None)
        metrics["num_images"] = len(evaluator.images) or len(
            {d["image_id"] for d in evaluator.detections})
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v)
                for k, v in metrics.items()}
