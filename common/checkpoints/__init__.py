"""Checkpoint import: official google/automl TF1-style checkpoints → our Keras models."""
from common.checkpoints.official import (
    CheckpointError,
    ImportReport,
    load_official_checkpoint,
    official_name,
    resolve_checkpoint_prefix,
)

__all__ = [
    "CheckpointError",
    "ImportReport",
    "load_official_checkpoint",
    "official_name",
    "resolve_checkpoint_prefix",
]
