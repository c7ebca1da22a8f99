"""Batch-norm factory: plain or synchronized (cross-replica) batch norm.

The official models name every batch norm ``tpu_batch_normalization[_N]``;
callers pass the name. Keras' momentum has TensorFlow's meaning
(``moving = moving * momentum + batch * (1 - momentum)``).
"""
import keras


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
        A ``keras.layers.BatchNormalization`` over the last axis.
    """
    return keras.layers.BatchNormalization(
        axis=-1,
        momentum=momentum,
        epsilon=epsilon,
        synchronized=synchronized,
        name=name,
    )
