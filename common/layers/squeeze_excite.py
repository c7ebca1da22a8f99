"""Squeeze-and-excitation (Hu et al., 2018) as used by EfficientNet (Tan & Le, 2019, §4)."""
import keras

from common.layers.activations import get_activation
from common.layers.conv import conv2d


class SqueezeExcite(keras.layers.Layer):
    """Global average pool → 1×1 reduce (+bias) → act → 1×1 expand (+bias) → sigmoid gate.

    Input and output ``[B, H, W, C]``. Weights: ``conv2d/{kernel,bias}`` (C → reduced)
    and ``conv2d_1/{kernel,bias}`` (reduced → C), the official names.

    Args:
        reduced_filters: channels of the bottleneck; the official blocks use
            ``max(1, int(block_input_filters * se_ratio))`` (the block *input*,
            not the expanded width).
        activation: activation between the two 1×1 convs.
    """

    def __init__(self, reduced_filters, activation="swish", **kwargs):
        super().__init__(**kwargs)
        self.reduced_filters = reduced_filters
        self.activation = activation
        self._act = get_activation(activation)
        self.reduce = None
        self.expand = None

    def build(self, input_shape):
        channels = input_shape[-1]
        self.reduce = conv2d(self.reduced_filters, 1, use_bias=True, name="conv2d")
        self.expand = conv2d(channels, 1, use_bias=True, name="conv2d_1")
        pooled = (input_shape[0], 1, 1, channels)
        self.reduce.build(pooled)
        self.expand.build((input_shape[0], 1, 1, self.reduced_filters))

    def call(self, inputs):
        x = keras.ops.mean(inputs, axis=(1, 2), keepdims=True)
        x = self.expand(self._act(self.reduce(x)))
        return inputs * keras.ops.sigmoid(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(reduced_filters=self.reduced_filters, activation=self.activation)
        return config
