"""Seeded, non-degenerate values for every weight of an official checkpoint,
computed from the weight's name and shape alone (NumPy only).

The reference generator (``make_reference.py``, run with google/automl's code)
and our parity test both call :func:`seeded_value`, so the two implementations
receive identical weights without a checkpoint in the repository. Plain random
initialisation would be useless for a comparison (batch norms at 0/1 make every
class logit equal its bias), so batch-norm scales, shifts and statistics and
the biases are spread too.
"""
import zlib

import numpy as np


def _fan_in(name, shape):
    if name.endswith("depthwise_kernel"):
        return int(np.prod(shape[:2]))
    return int(np.prod(shape[:-1]))


def seeded_value(name, shape):
    """float32 array of ``shape`` for the official weight ``name`` (no ``:0``)."""
    rng = np.random.RandomState(zlib.crc32(name.encode("utf-8")))
    leaf = name.rsplit("/", 1)[-1]
    shape = tuple(int(s) for s in shape)
    if name.endswith("class-predict/bias"):
        # Around the focal-loss prior (-4.6): spread scores, not all near 1, so
        # the detections do not hinge on near-ties.
        value = rng.uniform(-5.5, -3.5, shape)
    elif leaf in ("gamma", "moving_variance"):
        value = rng.uniform(0.5, 1.5, shape)
    elif leaf in ("beta", "moving_mean", "bias"):
        value = rng.uniform(-0.5, 0.5, shape)
    elif leaf.endswith("kernel"):
        value = rng.normal(0.0, np.sqrt(1.0 / max(1, _fan_in(leaf, shape))), shape)
    else:
        value = rng.uniform(0.5, 1.5, shape)  # e.g. BiFPN fusion weights (WSM)
    return value.astype(np.float32)
