"""Classification head of EfficientNet V1 / V2: 1×1 conv → BN → act → pool → dropout → dense."""
import keras

from common.layers.activations import get_activation
from common.layers.conv import conv2d
from common.layers.initializers import dense_kernel_initializer
from common.layers.normalization import batch_norm


class ClassificationHead(keras.layers.Layer):
    """Maps final features ``[B, H, W, C]`` to float32 logits ``[B, num_classes]``.

    Weights (inside a layer named ``head``): ``conv2d/kernel``,
    ``tpu_batch_normalization/*``, ``dense/{kernel,bias}``, the official names.
    The dense layer always computes in float32 so logits stay float32 under
    ``mixed_float16``.

    Args:
        num_classes: output classes.
        feature_size: channels of the 1×1 conv (1280 scaled by width).
        dropout_rate: dropout before the dense layer.
    """

    def __init__(
        self,
        num_classes,
        feature_size=1280,
        dropout_rate=0.2,
        activation="swish",
        bn_momentum=0.9,
        bn_epsilon=1e-3,
        sync_bn=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.feature_size = feature_size
        self.dropout_rate = dropout_rate
        self.activation = activation
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.sync_bn = sync_bn
        # Conv and BN are direct children (no ConvBnAct scope) to keep the
        # official names head/conv2d and head/tpu_batch_normalization.
        self.conv = conv2d(feature_size, 1, name="conv2d")
        self.bn = batch_norm("tpu_batch_normalization", bn_momentum, bn_epsilon, sync_bn)
        self._act = get_activation(activation)
        self.dropout = keras.layers.Dropout(dropout_rate, name="dropout") if dropout_rate else None
        self.dense = keras.layers.Dense(
            num_classes,
            kernel_initializer=dense_kernel_initializer(),
            dtype="float32",
            name="dense",
        )

    def call(self, inputs, training=None):
        x = self._act(self.bn(self.conv(inputs), training=training))
        x = keras.ops.mean(x, axis=(1, 2))
        if self.dropout is not None:
            x = self.dropout(x, training=training)
        return self.dense(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def fold_batch_norms(self):
        """Folds the batch norm into the 1×1 conv (inference only); returns 1."""
        from common.layers.batch_norm_folding import fold_into_conv

        return fold_into_conv(self.conv, self.bn)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            feature_size=self.feature_size,
            dropout_rate=self.dropout_rate,
            activation=self.activation,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            sync_bn=self.sync_bn,
        )
        return config
