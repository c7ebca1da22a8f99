"""Batch norm folded into the convolution before it, for inference.

At inference a batch norm is an affine map per channel,
``y = x * scale + shift`` with ``scale = gamma / sqrt(moving_variance + eps)``
and ``shift = beta - moving_mean * scale``. After a convolution it can be
absorbed: the kernel's output channels are multiplied by ``scale`` and
``shift`` becomes (or is added to) the convolution's bias, so the network runs
``conv + bias`` and no batch-norm op at all.

:func:`fold_batch_norms` does this in place for a whole network whose weights
are final (and switches its activations to their fusable inference form,
:func:`common.layers.activations.inference_form`) (built for inference, checkpoint restored). The folded network keeps
its variables and names but computes ``conv + bias``; it can no longer train
(a folded batch norm refuses ``training=True``) and its variables are not a
training checkpoint any more, so fold only a network built for inference.

Layers opt in with a ``fold_batch_norms()`` method returning how many batch
norms they folded; most use :func:`fold_into_conv` on each of their
conv → batch-norm pairs.
"""
from __future__ import annotations

import keras
import numpy as np
from absl import logging

from common.layers.activations import inference_form
from common.layers.normalization import BatchNorm


def affine_factors(bn):
    """``(scale, shift)``, float64 ``[C]`` each, of an inference batch norm."""
    variance = np.asarray(keras.ops.convert_to_numpy(bn.moving_variance), np.float64)
    mean = np.asarray(keras.ops.convert_to_numpy(bn.moving_mean), np.float64)
    scale = 1.0 / np.sqrt(variance + bn.epsilon)
    if bn.scale:
        scale = scale * keras.ops.convert_to_numpy(bn.gamma).astype(np.float64)
    shift = -mean * scale
    if bn.center:
        shift = shift + keras.ops.convert_to_numpy(bn.beta).astype(np.float64)
    return scale, shift


def scaled_kernel(conv, scale):
    """The kernel of ``conv`` whose output channels are multiplied by ``scale``.

    Returns ``(variable, new value)``: ``kernel [kh, kw, C_in, C_out]`` of a
    ``Conv2D``, ``depthwise_kernel [kh, kw, C, multiplier]`` of a
    ``DepthwiseConv2D`` (output channel ``c * multiplier + m``), or
    ``pointwise_kernel [1, 1, C_in, C_out]`` of a ``SeparableConv2D``.
    """
    if isinstance(conv, keras.layers.SeparableConv2D):
        variable = conv.pointwise_kernel
    elif isinstance(conv, keras.layers.DepthwiseConv2D):
        variable = conv.kernel
    elif isinstance(conv, keras.layers.Conv2D):
        variable = conv.kernel
    else:
        raise TypeError(f"Cannot fold a batch norm into {type(conv).__name__} {conv.name}.")
    kernel = keras.ops.convert_to_numpy(variable).astype(np.float64)
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        return variable, kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    return variable, kernel * scale


def fold_into_conv(conv, bn):
    """Folds ``bn`` (applied right after ``conv``) into ``conv``, in place.

    The conv's kernel is rescaled; the shift goes into the conv's bias when it
    has one (the batch norm then passes values through), otherwise the batch
    norm keeps only the bias add. Returns 1 (batch norms folded).
    """
    scale, shift = affine_factors(bn)
    variable, kernel = scaled_kernel(conv, scale)
    variable.assign(kernel.astype(variable.dtype))
    if conv.use_bias:
        bias = keras.ops.convert_to_numpy(conv.bias).astype(np.float64)
        conv.bias.assign((bias * scale + shift).astype(conv.bias.dtype))
        bn.set_folded(None)
    else:
        bn.set_folded(shift.astype(np.float32))
    return 1


def fold_batch_norms(network):
    """Folds every batch norm of ``network`` into its convolution, in place.

    Args:
        network: a built Keras model whose weights are final (inference only).

    Returns:
        The number of batch norms folded.

    Raises:
        ValueError: a batch norm no layer could fold (the network would
            silently run it; every batch norm of our networks follows a conv).
    """
    folded = 0
    for layer in network._flatten_layers(include_self=True, recursive=True):
        fold = getattr(layer, "fold_batch_norms", None)
        if callable(fold):
            folded += fold()
        if callable(getattr(layer, "_act", None)):
            # conv + bias + activation can now run as one fused kernel.
            layer._act = inference_form(layer._act)
    left = [layer.name for layer in network._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, BatchNorm) and not layer.folded]
    if left:
        raise ValueError(f"{len(left)} batch norm(s) of {network.name} could not be folded "
                         f"into a convolution: {', '.join(left[:5])}")
    logging.info("Folded %d batch norms of %s into their convolutions.", folded, network.name)
    return folded
