"""Classification experiment: data, stages (progressive resizing), task and evaluation
for the training runtime."""
from absl import logging

from common.training.loop import TrainingStage
from dataset.input_utils import EpochSpan
from dataset.record_check import RecordChecker
from efficientnet_v2.progressive import stage_schedule
from efficientnet_v2.task import ClassificationTask


class ClassificationExperiment:
    """Everything the runtime needs that is specific to classification.

    Args:
        config: the resolved ``ExperimentConfig``.
        distribution: the cross-replica hook (gives ``num_shards`` / ``shard_index``).
    """

    def __init__(self, config, distribution):
        self.config = config
        self.distribution = distribution
        self.task = ClassificationTask(config.model.num_classes, config.train.label_smoothing)
        self.records = RecordChecker("classification")

    def _dataset(self, image_size, is_training, batch_size, stage=None, seed=None, epochs=None):
        """The config's train/val pipeline at ``image_size`` with ``stage``'s strengths."""
        from dataset.classification_input import classification_dataset_from_config

        return classification_dataset_from_config(
            self.config,
            is_training,
            image_size=image_size,
            batch_size=batch_size,
            num_shards=self.distribution.num_shards,
            shard_index=self.distribution.shard_index,
            seed=seed,
            randaug_magnitude=(stage.randaug_magnitude or None) if stage else None,
            mixup_alpha=stage.mixup_alpha if stage else 0.0,
            cutmix_alpha=stage.cutmix_alpha if stage else 0.0,
            epochs=epochs,
        )

    def stages(self, model, num_epochs, batch_size, seed=None, *, batches_per_epoch):
        """One :class:`TrainingStage` per progressive-learning stage.

        ``batches_per_epoch``: micro-batches of ``batch_size`` this process's
        pipeline yields per epoch (the stream is epoch-structured for exact resume).
        """
        model_config = self.config.model
        progressive = model_config.progressive
        schedule = stage_schedule(
            num_epochs,
            min(progressive.n_stages, num_epochs),
            image_size=model_config.train_image_size,
            base_image_size=progressive.base_image_size,
            randaug_magnitude=progressive.randaug_magnitude,
            base_randaug_magnitude=progressive.base_randaug_magnitude,
            mixup_alpha=progressive.mixup_alpha,
            base_mixup=progressive.base_mixup,
            cutmix_alpha=progressive.cutmix_alpha,
            base_cutmix=progressive.base_cutmix,
            dropout_rate=model_config.dropout_rate,
            base_dropout=progressive.base_dropout,
        )
        head = _classification_head(model)
        stages = []
        for stage in schedule:
            def make(first_epoch=None, skip_batches=0, stage=stage):
                first = stage.start_epoch if first_epoch is None else first_epoch
                span = EpochSpan.of_batches(first, stage.end_epoch, batches_per_epoch, batch_size,
                                  skip_batches)
                return self._dataset(stage.image_size, True, batch_size, stage, seed, span)

            def enter(stage=stage):
                if head is not None and head.dropout is not None:
                    head.dropout.rate = stage.dropout_rate
                logging.info("Stage %d: image size %s, RandAugment %.3g, mixup %.3g, cutmix %.3g, "
                             "dropout %.3g", stage.index, stage.image_size,
                             stage.randaug_magnitude, stage.mixup_alpha, stage.cutmix_alpha,
                             stage.dropout_rate)

            stages.append(TrainingStage(
                stage.index, stage.start_epoch, stage.end_epoch, make, enter,
                description=f"at {stage.image_size[0]}x{stage.image_size[1]}",
            ))
        return stages

    def eval_dataset(self, batch_size):
        return self._dataset(self.config.model.image_size, False, batch_size)

    def evaluate(self, model, dataset, max_steps=None, results_json=None, preview=None):
        """Top-1 / top-5 of ``model`` (weights already in place). ``results_json``
        and ``preview`` (TensorBoard examples) are detection-only and ignored."""
        del results_json, preview
        return self.task.evaluate(model, dataset, max_steps=max_steps,
                                  distribution=self.distribution)


def _classification_head(model):
    for layer in model.layers:
        head = getattr(layer, "head", None)
        if head is not None:
            return head
    return None
