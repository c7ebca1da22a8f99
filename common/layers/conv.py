"""Convolution helpers and the conv + batch-norm + activation layer.

All convolutions are channels-last with TensorFlow ``same`` padding, which is
what the official models use (no explicit asymmetric padding).
"""
import keras

from common.layers.activations import get_activation
from common.layers.initializers import conv_kernel_initializer
from common.layers.normalization import batch_norm


def conv2d(filters, kernel_size, strides=1, use_bias=False, name="conv2d"):
    """A ``same``-padded Conv2D with the official kernel initializer."""
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=conv_kernel_initializer(),
        name=name,
    )


def depthwise_conv2d(kernel_size, strides=1, use_bias=False, name="depthwise_conv2d"):
    """A ``same``-padded depthwise conv (multiplier 1) with the official initializer."""
    return keras.layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=use_bias,
        depthwise_initializer=conv_kernel_initializer(),
        name=name,
    )


def separable_conv2d(filters, kernel_size=3, use_bias=True, name="conv", bias_initializer="zeros"):
    """Depthwise + pointwise conv as one layer (weights ``depthwise_kernel``,
    ``pointwise_kernel``, ``bias``), as used by BiFPN and the detection heads."""
    return keras.layers.SeparableConv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=use_bias,
        depthwise_initializer=keras.initializers.VarianceScaling(),
        pointwise_initializer=keras.initializers.VarianceScaling(),
        bias_initializer=bias_initializer,
        name=name,
    )


class ConvBnAct(keras.layers.Layer):
    """Conv2D (no bias) → batch norm → optional activation.

    Input ``[B, H, W, C_in]`` → output ``[B, ceil(H/s), ceil(W/s), filters]``.
    Sub-layers are named ``conv_name`` and ``bn_name`` so that, inside a layer
    named ``stem``, weights are ``stem/conv2d/kernel``,
    ``stem/tpu_batch_normalization/gamma`` ... as in the official checkpoints.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=1,
        activation="swish",
        bn_momentum=0.99,
        bn_epsilon=1e-3,
        sync_bn=False,
        conv_name="conv2d",
        bn_name="tpu_batch_normalization",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.activation = activation
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.sync_bn = sync_bn
        self.conv_name = conv_name
        self.bn_name = bn_name
        self.conv = conv2d(filters, kernel_size, strides, name=conv_name)
        self.bn = batch_norm(bn_name, bn_momentum, bn_epsilon, sync_bn)
        self._act = get_activation(activation) if activation else None

    def build(self, input_shape):
        self.conv.build(input_shape)
        out_shape = self.conv.compute_output_shape(input_shape)
        self.bn.build(out_shape)

    def call(self, inputs, training=None):
        x = self.bn(self.conv(inputs), training=training)
        return self._act(x) if self._act is not None else x

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def fold_batch_norms(self):
        """Folds the batch norm into the conv (inference only); returns 1."""
        from common.layers.batch_norm_folding import fold_into_conv

        return fold_into_conv(self.conv, self.bn)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            activation=self.activation,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            sync_bn=self.sync_bn,
            conv_name=self.conv_name,
            bn_name=self.bn_name,
        )
        return config
