"""Weights that move between Keras backends: a Keras 3 ``.weights.h5`` export.

Training checkpoints are TensorFlow object checkpoints (they hold the optimizer,
the EMA and the counters, and only TensorFlow reads them). To run a trained
network on another Keras backend (JAX), export its weights once, on the
TensorFlow backend::

    python model_inspect.py --runmode keras_weights --ckpt_path runs/d0 --export_dir d0_keras

The export directory holds

* ``model.weights.h5`` — Keras' own weights format (``Model.save_weights``),
  the EMA weights by default, batch norms *not* folded;
* ``config.yaml`` — the resolved recipe, so the same network is rebuilt (the
  file is keyed by the network's structure, not by variable names);
* ``label_map.json`` — the class names, when known.

It is written into a temporary directory and swapped in complete. Any backend
then loads it (``Detector.from_checkpoint("d0_keras")`` or
:func:`load_keras_weights`). This module imports no TensorFlow;
:func:`export_keras_weights` reads the checkpoint with the TensorFlow readers.

Keras names the weights in the file by attribute paths and counts per class
(the detection heads keep lists inside lists, which older Keras 3 releases do
not store); a Keras that silently skipped some would leave weights at their
initial values, so both directions check that the file holds exactly one
array per network weight.
"""
from __future__ import annotations

import os

from common.checkpoints.errors import CheckpointError
from common.export.errors import ExportError
from common.export.label_map import MODEL_DIR_LABEL_MAP
from common.model_dir import CONFIG_FILE

WEIGHTS_FILE = "model.weights.h5"
_SUFFIX = ".weights.h5"
_EXPORT_ENTRIES = {WEIGHTS_FILE, CONFIG_FILE, MODEL_DIR_LABEL_MAP}


def weights_file(path):
    """The ``.weights.h5`` file ``path`` names (the file, or an export directory
    holding ``model.weights.h5``), or None."""
    if not path:
        return None
    path = os.fspath(path)
    if path.endswith(_SUFFIX) and os.path.isfile(path):
        return path
    candidate = os.path.join(path, WEIGHTS_FILE)
    return candidate if os.path.isdir(path) and os.path.isfile(candidate) else None


def count_arrays(path):
    """Number of weight arrays stored in a ``.weights.h5`` file."""
    import h5py

    count = 0

    def visit(_, item):
        nonlocal count
        count += isinstance(item, h5py.Dataset)

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return count


def _check_count(network, path, verb):
    stored = count_arrays(path)
    if stored != len(network.weights):
        import keras

        raise CheckpointError(
            f"{path!r} holds {stored} weight arrays, the {network.name} network has "
            f"{len(network.weights)}: it was {verb} by a Keras that does not store every "
            f"layer of this network (lists inside lists; this is Keras "
            f"{keras.__version__}, the project pins 3.15.1) or for another model; export it again with the config "
            "beside it.")


def _is_folded(network):
    return any(getattr(layer, "folded", False) for layer in network._flatten_layers())


def save_keras_weights(network, path):
    """Writes ``network``'s weights to ``path`` (a ``*.weights.h5`` file), complete or not at all.

    Raises:
        ExportError: ``network`` has folded batch norms (an inference-only form
            that no freshly built network can load), or ``path`` has another suffix.
    """
    from common.atomic_files import commit_file, temporary_path

    if not os.fspath(path).endswith(_SUFFIX):
        raise ExportError(f"Keras weights files end in {_SUFFIX}; got {path!r}.")
    if _is_folded(network):
        raise ExportError("This network's batch norms are folded into its convolutions "
                          "(inference only); export the weights of an unfolded network.")
    # Keras picks the format from the suffix, so the temporary keeps it.
    temporary = temporary_path(os.fspath(path)[:-len(_SUFFIX)]) + _SUFFIX
    try:
        network.save_weights(temporary)
        _check_count(network, temporary, "written")
        commit_file(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def load_keras_weights(network, path):
    """Loads a ``.weights.h5`` file or export directory into ``network`` (any backend).

    Returns:
        One line saying what was loaded.

    Raises:
        CheckpointError: no weights file at ``path``, or one that does not fit.
    """
    file = weights_file(path)
    if file is None:
        raise CheckpointError(f"No Keras weights at {path!r}: expected a *{_SUFFIX} file or a "
                              f"directory holding {WEIGHTS_FILE} (model_inspect.py --runmode "
                              "keras_weights writes one).")
    _check_count(network, file, "written")
    try:
        network.load_weights(file)
    except ValueError as error:
        raise CheckpointError(
            f"{file!r} does not fit the {network.name} network ({str(error)[:300]}); build the "
            "network with the config.yaml written beside it.") from None
    return f"Loaded {len(network.weights)} weights from {file}."


def check_readable(ckpt_path):
    """Raises unless this backend can read ``ckpt_path`` (before any network is built)."""
    import keras

    if ckpt_path and not weights_file(ckpt_path) and keras.backend.backend() != "tensorflow":
        raise CheckpointError(
            f"{ckpt_path!r} is not a Keras-weights export, and other checkpoints are read "
            f"with TensorFlow, not on the {keras.backend.backend()} backend. Export it once "
            f"with TensorFlow: python model_inspect.py --runmode keras_weights --ckpt_path "
            f"{ckpt_path} --export_dir <dir>, then load <dir>.")


def load_network_weights(network, ckpt_path, use_ema=True):
    """Puts the weights of ``ckpt_path`` into ``network``: a Keras-weights export on any
    backend; training and official checkpoints on TensorFlow.

    Raises:
        common.checkpoints.CheckpointError: missing, corrupted or foreign checkpoints, or a
            TensorFlow checkpoint on another backend.
    """
    check_readable(ckpt_path)
    if weights_file(ckpt_path):
        from absl import logging

        logging.info("%s", load_keras_weights(network, ckpt_path))
        return
    from common.checkpoints import restore_for_inference

    restore_for_inference(network, ckpt_path, use_ema=use_ema)


def check_export_dir(export_dir):
    """Raises :class:`ExportError` unless ``export_dir`` may be replaced by a new
    Keras-weights export (see :func:`common.export.outputs.check_replaceable_dir`)."""
    from common.export.outputs import check_replaceable_dir

    check_replaceable_dir(export_dir, _EXPORT_ENTRIES, "a Keras-weights export")


def export_keras_weights(config, ckpt_path, export_dir, use_ema=True, label_map=None):
    """Checkpoint → Keras-weights export directory.

    Args:
        config: the resolved ``ExperimentConfig`` of the checkpoint.
        ckpt_path: a model directory, checkpoint prefix or official checkpoint
            (read with TensorFlow), or another Keras-weights export; None exports
            the random initialization.
        export_dir: the directory to write (an earlier export there is replaced
            once the new one is complete).
        use_ema: export the moving-average weights when the checkpoint has them.
        label_map: ``{class_id: name}`` written as ``label_map.json`` (optional).

    Returns:
        ``export_dir``.
    """
    from common.atomic_files import atomic_directory
    from common.config import build_network, dump_config
    from common.export.label_map import label_map_json

    check_export_dir(export_dir)
    network = build_network(config)
    if ckpt_path:
        load_network_weights(network, ckpt_path, use_ema)
    with atomic_directory(export_dir) as temporary:
        os.makedirs(temporary)
        save_keras_weights(network, os.path.join(temporary, WEIGHTS_FILE))
        with open(os.path.join(temporary, CONFIG_FILE), "w", encoding="utf-8") as handle:
            handle.write(dump_config(config))
        if label_map:
            with open(os.path.join(temporary, MODEL_DIR_LABEL_MAP), "w", encoding="utf-8") as handle:
                handle.write(label_map_json(label_map))
    return export_dir
