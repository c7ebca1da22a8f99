"""Non-maximum-suppression settings: the method names, their aliases, one settings object.

This module is the single owner of the NMS method vocabulary. The canonical
modes are the ones :func:`common.detection.postprocess.postprocess` implements
(see its module docstring); the aliases are the official google/automl names
(``gaussian``, ``hard``) and ``soft``. Config validation, training-time
detection and the export wrappers all read the names from here, so a name is
accepted everywhere or nowhere. It imports no TensorFlow so that config code
can use it cheaply.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

# Canonical post-processing modes, in the order the documentation lists them.
MODES = ("global", "global_hard", "per_class", "per_class_hard", "combined")
# Alternative names → canonical mode.
ALIASES = {"gaussian": "global", "soft": "global", "hard": "global_hard"}
# Every accepted method name: aliases first (``gaussian`` is the config default).
NMS_METHODS = tuple(ALIASES) + MODES


def canonical_nms_method(method: str) -> str:
    """Resolves an alias (``gaussian``/``soft``/``hard``) to its canonical mode.

    Raises:
        ValueError: if ``method`` is neither a mode nor an alias.
    """
    mode = ALIASES.get(method, method)
    if mode not in MODES:
        raise ValueError(f"NMS mode {method!r} must be one of {NMS_METHODS}.")
    return mode


@dataclasses.dataclass(frozen=True)
class NmsSettings:
    """Everything post-processing needs besides the tensors.

    Attributes:
        mode: canonical mode (one of :data:`MODES`); aliases are resolved on
            construction.
        iou_threshold: hard-NMS IoU threshold.
        score_threshold: minimum score; ``None`` uses the official per-mode
            default (see :func:`common.detection.postprocess.postprocess`).
        sigma: Gaussian soft-NMS sigma (paper convention).
        max_detections: detections kept per image.
        max_candidates: anchors kept before NMS; ``0`` keeps all.
    """

    mode: str = "global"
    iou_threshold: float = 0.5
    score_threshold: Optional[float] = 0.001
    sigma: float = 0.5
    max_detections: int = 100
    max_candidates: int = 5000

    def __post_init__(self):
        object.__setattr__(self, "mode", canonical_nms_method(self.mode))
        object.__setattr__(self, "max_candidates", int(self.max_candidates or 0))

    @classmethod
    def from_config(cls, nms_config) -> "NmsSettings":
        """Reads a detector's NMS config (attributes ``method``, ``iou_threshold``,
        ``score_threshold``, ``sigma``, ``max_output_size``, ``max_nms_inputs``)."""
        score = nms_config.score_threshold
        return cls(
            mode=nms_config.method,
            iou_threshold=float(nms_config.iou_threshold),
            score_threshold=None if score is None else float(score),
            sigma=float(nms_config.sigma),
            max_detections=int(nms_config.max_output_size),
            max_candidates=int(nms_config.max_nms_inputs or 0),
        )

    def postprocess_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of :func:`common.detection.postprocess.postprocess`."""
        return dataclasses.asdict(self)
