"""The TensorFlow fused batch-norm kernel behind :class:`common.layers.normalization.BatchNorm`.

Imported only on the TensorFlow backend.
"""
import tensorflow as tf


def fused_batch_norm(layer, inputs, training, update_statistics=True):
    """Batch norm of ``inputs`` ``[N, H, W, C]`` with ``layer``'s variables, fused.

    Training normalizes with the batch statistics and moves ``layer``'s moving
    mean / variance towards them exactly as Keras does: with the *biased* batch
    variance (the kernel reports the unbiased one, which is converted back).
    Inference normalizes with the moving statistics.

    Args:
        layer: a built ``keras.layers.BatchNormalization`` (channels-last).
        inputs: float32 / float16 / bfloat16 ``[N, H, W, C]``.
        training: Python bool: use (and update) batch statistics.
        update_statistics: in training, move the moving statistics (False when
            a checkpointed layer is recomputed: the first pass already did).

    Returns:
        ``[N, H, W, C]`` in the dtype of ``inputs``.
    """
    x = tf.convert_to_tensor(inputs)
    if x.dtype not in (tf.float32, tf.float16, tf.bfloat16):
        x = tf.cast(x, tf.float32)
    channels = x.shape[-1]
    gamma = (tf.convert_to_tensor(layer.gamma) if layer.scale
             else tf.ones([channels], tf.float32))
    beta = (tf.convert_to_tensor(layer.beta) if layer.center
            else tf.zeros([channels], tf.float32))
    if not training:
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, mean=tf.convert_to_tensor(layer.moving_mean),
            variance=tf.convert_to_tensor(layer.moving_variance), epsilon=layer.epsilon,
            data_format="NHWC", is_training=False)
        return outputs
    outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
        x, gamma, beta, epsilon=layer.epsilon, data_format="NHWC", is_training=True)
    count = tf.cast(tf.size(x, out_type=tf.int64) // channels, tf.float32)
    # n / (n - 1) undone; one value per channel (n = 1) has variance 0.
    variance = tf.where(count > 1.0, unbiased * ((count - 1.0) / tf.maximum(count, 1.0)),
                        tf.zeros_like(unbiased))
    if not update_statistics:
        return outputs
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
    return outputs
