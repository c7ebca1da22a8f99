"""Activation lookup by the names used in the official configs."""
import keras

_ACTIVATIONS = {
    "swish": keras.activations.silu,
    "silu": keras.activations.silu,
    "relu": keras.activations.relu,
    "relu6": keras.activations.relu6,
    "gelu": keras.activations.gelu,
    "hard_swish": keras.activations.hard_silu,
    "hswish": keras.activations.hard_silu,
    "sigmoid": keras.activations.sigmoid,
    "identity": keras.activations.linear,
    "linear": keras.activations.linear,
}


def get_activation(name):
    """Returns the activation function called ``name`` (e.g. ``"swish"``).

    Raises:
        ValueError: naming the unknown activation and the valid names.
    """
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; valid names: {sorted(_ACTIVATIONS)}."
        ) from None
