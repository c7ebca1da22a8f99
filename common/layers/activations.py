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


def _swish_product(x):
    """``x * sigmoid(x)``, spelled out: see :func:`inference_form`."""
    return x * keras.ops.sigmoid(x)


def inference_form(activation):
    """The same activation in the form an inference graph runs fastest.

    Swish becomes an explicit ``x * sigmoid(x)``: Keras' ``silu`` is TensorFlow's
    ``tf.nn.silu``, whose memory-saving custom gradient hides the pattern from
    the graph optimizer, so it can not fuse conv + bias + swish into one oneDNN
    kernel. Same values; for networks that no longer train (the training graph
    keeps ``silu``'s cheaper gradient). Other activations are returned as they are.
    """
    return _swish_product if activation is keras.activations.silu else activation


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
