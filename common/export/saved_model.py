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

The whole directory, ``config.yaml`` included, is written under a hidden
temporary name next to ``export_dir`` and swapped in only when complete
(:func:`common.atomic_files.atomic_directory`): a directory at ``export_dir``
is always a complete export, and a failed or killed export leaves the earlier
one there untouched.
"""
from __future__ import annotations

import os
import time

import tensorflow as tf
from absl import logging

from common.atomic_files import atomic_directory
from common.export.errors import ExportError

CONFIG_FILE = "config.yaml"
# What export_saved_model (and older TensorFlow / Keras versions) put in an export
# directory. Anything else there is the user's: the export replaces the whole
# directory, so it refuses rather than deleting foreign files.
_EXPORT_ENTRIES = {"saved_model.pb", "saved_model.pbtxt", "fingerprint.pb", "variables",
                   "assets", "keras_metadata.pb", CONFIG_FILE}


def check_export_dir(export_dir):
    """Raises :class:`ExportError` unless ``export_dir`` may be replaced by a new
    SavedModel (see :func:`common.export.outputs.check_replaceable_dir`)."""
    from common.export.outputs import check_replaceable_dir

    check_replaceable_dir(export_dir, _EXPORT_ENTRIES, "a SavedModel")


def export_saved_model(module, export_dir, config=None):
    """Writes ``module`` (an ``InferenceModule``) as a SavedModel.

    Args:
        module: the inference wrapper.
        export_dir: output directory (its parents are created; an earlier export
            there is replaced, atomically, once the new one is complete).
        config: the ``ExperimentConfig`` to store beside it as ``config.yaml``.

    Returns:
        ``export_dir``.

    Raises:
        ExportError: ``export_dir`` is a file or holds files of something else
            (see :func:`check_export_dir`).
    """
    check_export_dir(export_dir)
    start = time.time()
    signatures = module.serving_functions()
    with atomic_directory(export_dir) as temporary:
        tf.saved_model.save(module, temporary, signatures=signatures)
        if config is not None:
            from common.config import dump_config

            # Inside the temporary directory, so it is swapped in with the model.
            with open(os.path.join(temporary, CONFIG_FILE), "w", encoding="utf-8") as handle:
                handle.write(dump_config(config))
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
    if not os.path.isfile(os.path.join(export_dir, "fingerprint.pb")):
        # TensorFlow writes the fingerprint last; exports of this project always have
        # one. Its absence marks a directory from an in-place writer that was cut off.
        logging.warning("%s has no fingerprint.pb: it may be an incomplete export (an "
                        "interrupted writer, or TensorFlow < 2.12); export it again if it "
                        "misbehaves.", export_dir)
    return tf.saved_model.load(export_dir)


def saved_model_config_path(export_dir):
    """Path of the config written beside an exported SavedModel (may not exist)."""
    return os.path.join(export_dir, CONFIG_FILE)
