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

    def _uses_fused_kernel(self, inputs, training, mask):
        # Keras stores ``axis`` as an int.
        return (self.fused and keras.backend.backend() == "tensorflow"
                and mask is None and isinstance(training, (bool, type(None)))
                and not self.synchronized and not self.renorm
                and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and self.epsilon >= _MIN_FUSED_EPSILON)

    def call(self, inputs, training=None, mask=None):
        if not self._uses_fused_kernel(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        from common.layers.fused_batch_norm_tf import fused_batch_norm

        outputs = fused_batch_norm(self, inputs, bool(training) and self.trainable)
        return keras.ops.cast(outputs, self.compute_dtype)


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
