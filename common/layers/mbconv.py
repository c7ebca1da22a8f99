"""Inverted-residual blocks: MBConv (MobileNetV2 / EfficientNet) and Fused-MBConv
(EfficientNetV2, Tan & Le 2021, §3.2 and Figure 2).

Sub-layer names reproduce the official variable scopes, which number layers in
creation order: with an expansion, ``conv2d`` is the expansion conv and
``conv2d_1`` the projection; without one, the projection is ``conv2d``. Batch
norms are numbered the same way (``tpu_batch_normalization``, ``_1``, ``_2``).
"""
import keras

from common.layers.activations import get_activation
from common.layers.conv import conv2d, depthwise_conv2d
from common.layers.drop_path import DropPath
from common.layers.normalization import batch_norm
from common.layers.squeeze_excite import SqueezeExcite


def _numbered(base, index):
    return base if index == 0 else f"{base}_{index}"


class _InvertedResidual(keras.layers.Layer):
    """Shared arguments, residual logic and config of both block types."""

    # train.gradient_checkpointing=backbone recomputes each block (common.layers.recompute).
    checkpoint_group = "backbone"

    def __init__(
        self,
        input_filters,
        output_filters,
        kernel_size=3,
        strides=1,
        expand_ratio=1,
        se_ratio=None,
        id_skip=True,
        drop_path_rate=0.0,
        activation="swish",
        bn_momentum=0.99,
        bn_epsilon=1e-3,
        sync_bn=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_filters = int(input_filters)
        self.output_filters = int(output_filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.expand_ratio = expand_ratio
        self.se_ratio = se_ratio
        self.id_skip = id_skip
        self.drop_path_rate = float(drop_path_rate)
        self.activation = activation
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.sync_bn = sync_bn
        self._act = get_activation(activation)
        self.expanded_filters = int(self.input_filters * expand_ratio)
        self.has_se = se_ratio is not None and 0 < se_ratio <= 1
        self.has_residual = (
            id_skip and self.strides == 1 and self.input_filters == self.output_filters
        )
        self._bn_count = 0
        self._conv_count = 0

    def _next_bn(self):
        layer = batch_norm(
            _numbered("tpu_batch_normalization", self._bn_count),
            self.bn_momentum,
            self.bn_epsilon,
            self.sync_bn,
        )
        self._bn_count += 1
        return layer

    def _next_conv(self, filters, kernel_size, strides=1):
        layer = conv2d(filters, kernel_size, strides, name=_numbered("conv2d", self._conv_count))
        self._conv_count += 1
        return layer

    def _make_se(self):
        if not self.has_se:
            return None
        reduced = max(1, int(self.input_filters * self.se_ratio))
        return SqueezeExcite(reduced, self.activation, name="se")

    def _make_drop_path(self):
        if self.has_residual and self.drop_path_rate > 0:
            return DropPath(self.drop_path_rate, name="drop_path")
        return None

    def _residual(self, inputs, x, training):
        if not self.has_residual:
            return x
        if self.drop_path is not None:
            x = self.drop_path(x, training=training)
        return x + inputs

    def fold_batch_norms(self):
        """Folds each batch norm into the conv before it (inference only);
        returns how many were folded."""
        from common.layers.batch_norm_folding import fold_into_conv

        pairs = [(getattr(self, "expand_conv", None), getattr(self, "expand_bn", None)),
                 (getattr(self, "depthwise", None), getattr(self, "depthwise_bn", None)),
                 (self.project_conv, self.project_bn)]
        return sum(fold_into_conv(conv, bn) for conv, bn in pairs if bn is not None)

    def compute_output_shape(self, input_shape):
        def down(size):
            return None if size is None else -(-size // self.strides)

        return (input_shape[0], down(input_shape[1]), down(input_shape[2]), self.output_filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_filters=self.input_filters,
            output_filters=self.output_filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            expand_ratio=self.expand_ratio,
            se_ratio=self.se_ratio,
            id_skip=self.id_skip,
            drop_path_rate=self.drop_path_rate,
            activation=self.activation,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            sync_bn=self.sync_bn,
        )
        return config


class MBConv(_InvertedResidual):
    """1×1 expand → BN → act → k×k depthwise (stride s) → BN → act → SE → 1×1 project → BN
    (+ drop path and identity skip when stride 1 and widths match).

    Input ``[B, H, W, input_filters]`` → ``[B, ceil(H/s), ceil(W/s), output_filters]``.
    """

    def __init__(self, input_filters, output_filters, **kwargs):
        super().__init__(input_filters, output_filters, **kwargs)
        if self.expand_ratio != 1:
            self.expand_conv = self._next_conv(self.expanded_filters, 1)
            self.expand_bn = self._next_bn()
        else:
            self.expand_conv = self.expand_bn = None
        self.depthwise = depthwise_conv2d(self.kernel_size, self.strides)
        self.depthwise_bn = self._next_bn()
        self.se = self._make_se()
        self.project_conv = self._next_conv(self.output_filters, 1)
        self.project_bn = self._next_bn()
        self.drop_path = self._make_drop_path()

    def call(self, inputs, training=None):
        x = inputs
        if self.expand_conv is not None:
            x = self._act(self.expand_bn(self.expand_conv(x), training=training))
        x = self._act(self.depthwise_bn(self.depthwise(x), training=training))
        if self.se is not None:
            x = self.se(x)
        x = self.project_bn(self.project_conv(x), training=training)
        return self._residual(inputs, x, training)


class FusedMBConv(_InvertedResidual):
    """k×k expand conv (stride s) → BN → act → (SE) → 1×1 project → BN.

    Without expansion (``expand_ratio == 1``) the block is a single k×k conv
    (stride s) → BN → act, as in the official EfficientNetV2. Drop path and
    identity skip as in :class:`MBConv`.
    """

    def __init__(self, input_filters, output_filters, **kwargs):
        super().__init__(input_filters, output_filters, **kwargs)
        if self.expand_ratio != 1:
            self.expand_conv = self._next_conv(self.expanded_filters, self.kernel_size, self.strides)
            self.expand_bn = self._next_bn()
            self.se = self._make_se()
            self.project_conv = self._next_conv(self.output_filters, 1)
        else:
            self.expand_conv = self.expand_bn = None
            self.se = self._make_se()
            self.project_conv = self._next_conv(self.output_filters, self.kernel_size, self.strides)
        self.project_bn = self._next_bn()
        self.drop_path = self._make_drop_path()

    def call(self, inputs, training=None):
        x = inputs
        if self.expand_conv is not None:
            x = self._act(self.expand_bn(self.expand_conv(x), training=training))
        if self.se is not None:
            x = self.se(x)
        x = self.project_bn(self.project_conv(x), training=training)
        if self.expand_conv is None:
            x = self._act(x)
        return self._residual(inputs, x, training)
