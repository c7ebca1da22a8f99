"""SavedModel export of an inference wrapper (pre- and post-processing in the graph).

Signatures (see :meth:`common.export.module.InferenceModule.serving_functions`):

* ``serving_default``: ``images`` uint8 ``[B, H, W, 3]``, dynamic batch and
  size (the images of one call share a size) → final outputs;
* ``serve_encoded``: ``encoded_images`` string ``[B]`` of JPEG / PNG bytes of
  any sizes → final outputs;
* ``raw_outputs``: ``normalized_images`` float32 ``[B, h, w, 3]`` → the raw
  network outputs.

The resolved experiment config is written beside the model as
``config.yaml`` (``assets`` are not needed: anchors are constants of the graph).
"""
from __future__ import annotations

import os
import time

import tensorflow as tf
from absl import logging

CONFIG_FILE = "config.yaml"


def export_saved_model(module, export_dir, config=None):
    """Writes ``module`` (an ``InferenceModule``) as a SavedModel.

    Args:
        module: the inference wrapper.
        export_dir: output directory (created; an existing SavedModel there is replaced).
        config: the ``ExperimentConfig`` to store beside it as ``config.yaml``.

    Returns:
        ``export_dir``.
    """
    start = time.time()
    signatures = module.serving_functions()
    os.makedirs(export_dir, exist_ok=True)
    tf.saved_model.save(module, export_dir, signatures=signatures)
    if config is not None:
        from common.config import dump_config

        dump_config(config, os.path.join(export_dir, CONFIG_FILE))
    logging.info("SavedModel with signatures %s written to %s in %.1f s.",
                 sorted(signatures), export_dir, time.time() - start)
    return export_dir


def load_saved_model(export_dir):
    """Loads a SavedModel written by :func:`export_saved_model`.

    Raises:
        FileNotFoundError: naming the directory when it holds no SavedModel.
    """
    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        raise FileNotFoundError(
            f"No SavedModel in {export_dir!r} (expected {export_dir}/saved_model.pb); "
            "write one with: model_inspect.py --runmode saved_model --export_dir DIR")
    return tf.saved_model.load(export_dir)


def saved_model_config_path(export_dir):
    """Path of the config written beside an exported SavedModel (may not exist)."""
    return os.path.join(export_dir, CONFIG_FILE)
