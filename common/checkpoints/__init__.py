"""Checkpoint import: official google/automl TF1-style checkpoints → our Keras models.

The names below are loaded on first use (PEP 562): the readers need TensorFlow,
while :class:`CheckpointError` (``common.checkpoints.errors``) must stay
importable on other Keras backends.
"""
import importlib

_EXPORTS = {
    "CheckpointError": "common.checkpoints.errors",
    "ImportReport": "common.checkpoints.official",
    "load_official_checkpoint": "common.checkpoints.official",
    "official_name": "common.checkpoints.official",
    "resolve_checkpoint_prefix": "common.checkpoints.official",
    "RestoreResult": "common.checkpoints.restore",
    "is_training_checkpoint": "common.checkpoints.restore",
    "restore_for_inference": "common.checkpoints.restore",
    "restore_with_report": "common.checkpoints.restore",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'common.checkpoints' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
