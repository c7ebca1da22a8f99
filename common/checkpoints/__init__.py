"""Checkpoint import: official google/automl TF1-style checkpoints → our Keras models."""
from common.checkpoints.official import (
    CheckpointError,
    ImportReport,
    load_official_checkpoint,
    official_name,
    resolve_checkpoint_prefix,
)
from common.checkpoints.restore import (
    RestoreResult,
    is_training_checkpoint,
    restore_for_inference,
    restore_with_report,
)

__all__ = [
    "CheckpointError",
    "ImportReport",
    "load_official_checkpoint",
    "official_name",
    "is_training_checkpoint",
    "resolve_checkpoint_prefix",
    "restore_for_inference",
    "restore_with_report",
    "RestoreResult",
]
