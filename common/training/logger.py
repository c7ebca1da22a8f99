"""The one logger: terminal progress, TensorBoard scalars/images, DLLogger JSON lines.

``model_dir/dllogger.json`` holds one ``DLLL {json}`` line per record, the
format of NVIDIA's DLLogger (``{"timestamp", "elapsedtime", "datetime", "type",
"step", "data"}``) that their parsing tools read. Only the chief process writes.
"""
import datetime
import json
import os
import time

import tensorflow as tf
from absl import logging


class MetricLogger:
    """Writes metrics of the chief process; a no-op on other ranks.

    Args:
        model_dir: output directory (None: terminal only).
        is_chief: whether this process writes.
    """

    def __init__(self, model_dir=None, is_chief=True):
        self.is_chief = is_chief
        self.start = time.time()
        self._json = None
        self._writer = None
        if model_dir and is_chief:
            os.makedirs(model_dir, exist_ok=True)
            self._json = open(os.path.join(model_dir, "dllogger.json"), "a")
            self._writer = tf.summary.create_file_writer(os.path.join(model_dir, "tensorboard"))

    def _dll(self, kind, step, data):
        if self._json is None:
            return
        now = time.time()
        record = {
            "timestamp": now,
            "elapsedtime": now - self.start,
            "datetime": datetime.datetime.now().isoformat(),
            "type": kind,
            "step": step,
            "data": data,
        }
        self._json.write("DLLL " + json.dumps(record) + "\n")
        self._json.flush()

    def metadata(self, data):
        """Run parameters (config, world size...) once at start."""
        self._dll("PARAMETER", "PARAMETER", data)

    def log(self, step, metrics, prefix="train", epoch=None, terminal=True):
        """Logs float metrics at ``step`` everywhere."""
        if not self.is_chief:
            return
        metrics = {k: float(v) for k, v in metrics.items()}
        if terminal:
            shown = "  ".join(f"{k} {v:.5g}" for k, v in metrics.items())
            where = f"epoch {epoch} " if epoch is not None else ""
            logging.info("[%s] %sstep %d  %s", prefix, where, step, shown)
        self._dll("LOG", [epoch, step] if epoch is not None else [step],
                  {f"{prefix}.{k}": v for k, v in metrics.items()})
        if self._writer is not None:
            with self._writer.as_default(step=step):
                for key, value in metrics.items():
                    tf.summary.scalar(f"{prefix}/{key}", value)

    def images(self, step, name, images):
        """Writes a batch of uint8/float images ``[N, H, W, 3]`` to TensorBoard."""
        if self._writer is not None:
            with self._writer.as_default(step=step):
                tf.summary.image(name, images, max_outputs=len(images))

    def close(self):
        if self._json is not None:
            self._json.close()
            self._json = None
        if self._writer is not None:
            self._writer.flush()
