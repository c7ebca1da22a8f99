"""Classification task: the loss and evaluation wrapped around the pure classifier."""
import numpy as np
import tensorflow as tf

from common.progress import progress


class ClassificationTask:
    """Softmax cross-entropy (with label smoothing) on float32 logits.

    Args:
        num_classes: classifier width.
        label_smoothing: applied here, to one-hot (or mixed) labels.
    """

    def __init__(self, num_classes, label_smoothing=0.0):
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)

    def compute_loss(self, logits, labels):
        """Args: logits ``[B, C]``, labels ``[B, C]`` one-hot / mixed. Returns float32 scalars."""
        logits = tf.cast(logits, tf.float32)
        labels = tf.cast(labels, tf.float32)
        if self.label_smoothing:
            labels = labels * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels, logits))
        return {"total_loss": loss, "cls_loss": loss}

    def evaluate(self, model, dataset, max_steps=None, distribution=None):
        """Top-1 / top-5 accuracy and mean loss of ``model`` on ``dataset``.

        Args:
            model: the classifier (weights to evaluate already in place, e.g. EMA).
            dataset: yields ``(images [B,H,W,3], labels [B,C] one-hot)``; finite.
            max_steps: optional cap on batches.
            distribution: optional cross-replica hook; counts are summed over ranks.

        Returns:
            ``{"top1": float, "top5": float, "loss": float, "num_images": int}``.
        """
        k = min(5, self.num_classes)

        @tf.function
        def batch_stats(images, labels):
            logits = tf.cast(model(images, training=False), tf.float32)
            target = tf.argmax(labels, axis=-1, output_type=tf.int32)
            top1 = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                                  target), tf.float32))
            topk = tf.reduce_sum(tf.cast(tf.nn.in_top_k(target, logits, k), tf.float32))
            loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels, logits))
            return tf.stack([top1, topk, loss, tf.cast(tf.shape(images)[0], tf.float32)])

        totals = np.zeros(4, np.float64)
        chief = distribution is None or distribution.is_chief
        with progress(max_steps, "evaluation", "batch", is_chief=chief) as bar:
            for step, (images, labels) in enumerate(dataset):
                if max_steps is not None and step >= max_steps:
                    break
                totals += batch_stats(images, labels).numpy()
                bar.update(1)
        if distribution is not None and distribution.num_shards > 1:
            # Each shard's process evaluated its own files: sum the counts.
            totals = (np.asarray(distribution.allreduce_mean(tf.constant(totals)))
                      * distribution.num_shards)
        count = max(totals[3], 1.0)
        return {"top1": totals[0] / count, "top5": totals[1] / count, "loss": totals[2] / count,
                "num_images": int(totals[3])}
