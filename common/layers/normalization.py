"""Batch-norm factory: plain or synchronized (cross-replica) batch norm.

The official models name every batch norm ``tpu_batch_normalization[_N]``;
callers pass the name. Keras' momentum has TensorFlow's meaning
(``moving = moving * momentum + batch * (1 - momentum)``).

On the TensorFlow backend, a channels-last batch norm of a 4-D feature map
runs as one fused kernel (``FusedBatchNormV3``: oneDNN on CPU, cuDNN on GPU)
instead of Keras' separate moments / normalize ops and their gradients: the
same values, gradients and moving statistics (Keras' biased batch variance),
the same variables and names. Synchronized batch norm, masks, other ranks and
other backends keep Keras' own path.
"""
import keras

from common.layers.recompute import replaying

# FusedBatchNormV3 (cuDNN) refuses a smaller variance epsilon.
_MIN_FUSED_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="effdet_toolkit")
class BatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that uses the fused kernel on TensorFlow.

    Inputs ``[N, H, W, C]`` (float32, float16 or bfloat16; the statistics and
    ``gamma`` / ``beta`` stay float32); outputs the same shape in the layer's
    compute dtype. Set ``fused = False`` on an instance to force Keras' path.
    """

    fused = True
    # Set by ``set_folded`` once the layer is folded into the conv before it.
    _folded = False
    _folded_bias = None

    @property
    def folded(self):
        """True once folded into the preceding conv (see ``batch_norm_folding``)."""
        return self._folded

    def set_folded(self, bias):
        """Marks the layer folded: it then only adds ``bias`` (float ``[C]``,
        or None to pass values through). Inference only; irreversible."""
        self._folded = True
        self._folded_bias = bias

    def _uses_fused_kernel(self, inputs, training, mask):
        # Keras stores ``axis`` as an int.
        return (self.fused and keras.backend.backend() == "tensorflow"
                and mask is None and isinstance(training, (bool, type(None)))
                and not self.synchronized and not self.renorm
                and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and self.epsilon >= _MIN_FUSED_EPSILON)

    def call(self, inputs, training=None, mask=None):
        if self._folded:
            return self._folded_call(inputs, training)
        # A checkpointed layer being recomputed: same batch statistics, no second update.
        update = not replaying()
        if not self._uses_fused_kernel(inputs, training, mask):
            if update:
                return super().call(inputs, training=training, mask=mask)
            momentum, self.momentum = self.momentum, 1.0  # moving = moving * 1 + batch * 0
            try:
                return super().call(inputs, training=training, mask=mask)
            finally:
                self.momentum = momentum
        from common.layers.fused_batch_norm_tf import fused_batch_norm

        outputs = fused_batch_norm(self, inputs, bool(training) and self.trainable, update)
        return keras.ops.cast(outputs, self.compute_dtype)

    def _folded_call(self, inputs, training):
        if isinstance(training, bool) and training:
            raise ValueError(f"{self.name} is folded into its convolution (an inference-only "
                             "network) and cannot run in training mode.")
        inputs = keras.ops.cast(inputs, self.compute_dtype)
        if self._folded_bias is None:
            return inputs
        return add_channel_bias(inputs, self._folded_bias)


def add_channel_bias(inputs, bias):
    """``inputs [..., C] + bias [C]`` in the dtype of ``inputs``.

    On TensorFlow a ``BiasAdd`` (not an ``Add``), which the graph optimizer fuses
    into the convolution before it (and the activation after it).
    """
    bias = keras.ops.cast(bias, inputs.dtype)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.nn.bias_add(inputs, bias)
    return inputs + bias


def batch_norm(name, momentum=0.99, epsilon=1e-3, synchronized=False):
    """Creates a channels-last batch norm.

    Args:
        name: layer name (weights are ``<name>/gamma`` ... ``<name>/moving_variance``).
        momentum: moving-average momentum (0.99 for EfficientNet V1 / EfficientDet,
            0.9 for EfficientNetV2).
        epsilon: variance epsilon (1e-3 in every official model).
        synchronized: average batch statistics across replicas (``--sync_bn``);
            only has an effect under a ``tf.distribute`` strategy.

    Returns:
        A :class:`BatchNorm` (a ``keras.layers.BatchNormalization``) over the last axis.
    """
    return BatchNorm(
        axis=-1,
        momentum=momentum,
        epsilon=epsilon,
        synchronized=synchronized,
        name=name,
    )
