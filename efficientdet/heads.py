"""Class and box prediction heads of EfficientDet (Tan, Pang & Le 2020, §3.3, Figure 3).

Each head is shared across pyramid levels: ``repeats`` 3×3 separable convs
(with bias, weights shared by all levels), each followed by a batch norm of
its own per level and swish, then one 3×3 separable predict conv. Names follow
the official scopes: ``class_net/class-<i>``, ``class_net/class-<i>-bn-<level>``,
``class_net/class-predict`` (``box_net/box-…`` likewise).

Output channel layout: ``anchor * num_classes + class`` for the class head,
``anchor * 4 + (ty, tx, th, tw)`` for the box head. The predict conv always
computes in float32, so outputs are float32 under ``mixed_float16``.
"""
import math

import keras

from common.layers.activations import get_activation
from common.layers.conv import separable_conv2d
from common.layers.drop_path import DropPath
from common.layers.normalization import add_channel_bias, batch_norm

CLASS_PRIOR_PROBABILITY = 0.01


def class_bias_initializer(prior=CLASS_PRIOR_PROBABILITY):
    """Bias so that sigmoid(logit) = ``prior`` at start (Lin et al. 2017, focal loss §4.1)."""
    return keras.initializers.Constant(-math.log((1.0 - prior) / prior))


class _LevelSharedHead(keras.layers.Layer):
    """Shared conv tower + per-level BN + predict conv; see :class:`ClassNet`."""

    _prefix = None
    # train.gradient_checkpointing=all recomputes each head (common.layers.recompute).
    checkpoint_group = "head"

    def __init__(
        self,
        output_channels: int,
        predict_bias_initializer,
        num_filters: int,
        repeats: int,
        min_level: int = 3,
        max_level: int = 7,
        separable_conv: bool = True,
        activation: str = "swish",
        drop_path_rate: float = 0.0,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        sync_bn: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_filters = int(num_filters)
        self.repeats = int(repeats)
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.separable_conv = bool(separable_conv)
        self.activation = activation
        self.drop_path_rate = float(drop_path_rate)
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.sync_bn = sync_bn
        self._act = get_activation(activation)
        levels = range(self.min_level, self.max_level + 1)
        prefix = self._prefix
        self.convs = [self._conv(self.num_filters, f"{prefix}-{i}") for i in range(self.repeats)]
        self.bns = [
            [batch_norm(f"{prefix}-{i}-bn-{l}", bn_momentum, bn_epsilon, sync_bn) for l in levels]
            for i in range(self.repeats)
        ]
        # Drop path needs a residual, so the first conv (which may change width) has none.
        self.drop_paths = [
            DropPath(self.drop_path_rate, name=f"{prefix}-{i}-drop_path")
            if i > 0 and self.drop_path_rate > 0
            else None
            for i in range(self.repeats)
        ]
        self.predict = self._conv(
            output_channels,
            f"{prefix}-predict",
            bias_initializer=predict_bias_initializer,
            dtype="float32",
        )

    def _conv(self, filters, name, bias_initializer="zeros", dtype=None):
        if self.separable_conv:
            if dtype is None:
                return separable_conv2d(filters, 3, name=name, bias_initializer=bias_initializer)
            return keras.layers.SeparableConv2D(
                filters,
                3,
                padding="same",
                depthwise_initializer=keras.initializers.VarianceScaling(),
                pointwise_initializer=keras.initializers.VarianceScaling(),
                bias_initializer=bias_initializer,
                dtype=dtype,
                name=name,
            )
        return keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer=bias_initializer,
            dtype=dtype,
            name=name,
        )

    def build(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        num_levels = self.max_level - self.min_level + 1
        if len(shapes) != num_levels:
            raise ValueError(
                f"{self.name} expects {num_levels} features (P{self.min_level}–P{self.max_level}), "
                f"got {len(shapes)}."
            )
        channels = shapes[0][-1]
        for conv, bns in zip(self.convs, self.bns):
            conv.build((None, None, None, channels))
            channels = self.num_filters
            for bn in bns:
                bn.build((None, None, None, channels))
        self.predict.build((None, None, None, channels))

    def call(self, feats, training=None):
        if self._folded_convs is not None:
            return self._folded_call(feats, training)
        outputs = []
        for level_index, x in enumerate(feats):
            for conv, bns, drop_path in zip(self.convs, self.bns, self.drop_paths):
                y = self._act(bns[level_index](conv(x), training=training))
                x = y if drop_path is None else drop_path(y, training=training) + x
            outputs.append(self.predict(x))
        return outputs

    # Per conv and level once the batch norms are folded: (kernels, bias) as
    # NumPy constants, kernels = (depthwise, pointwise) or (kernel,).
    _folded_convs = None

    def fold_batch_norms(self):
        """Folds the per-level batch norms into per-level copies of the shared
        convs (inference only): conv ``i`` at level ``l`` gets its pointwise
        (or plain) kernel scaled and its bias shifted by batch norm ``(i, l)``.
        The depthwise kernels stay shared. Returns how many were folded."""
        from common.layers.batch_norm_folding import affine_factors, scaled_kernel

        folded = []
        for conv, bns in zip(self.convs, self.bns):
            per_level = []
            bias = keras.ops.convert_to_numpy(conv.bias).astype("float64")
            shared = (keras.ops.convert_to_numpy(conv.depthwise_kernel),) \
                if self.separable_conv else ()
            for bn in bns:
                scale, shift = affine_factors(bn)
                _, kernel = scaled_kernel(conv, scale)
                kernels = shared + (kernel,)
                per_level.append((tuple(k.astype("float32") for k in kernels),
                                  (bias * scale + shift).astype("float32")))
                bn.set_folded(None)
            folded.append(per_level)
        self._folded_convs = folded
        return sum(len(bns) for bns in self.bns)

    def _folded_call(self, feats, training):
        if isinstance(training, bool) and training:
            raise ValueError(f"{self.name} has its batch norms folded (an inference-only "
                             "network) and cannot run in training mode.")
        ops = keras.ops
        outputs = []
        for level_index, x in enumerate(feats):
            for per_level, drop_path in zip(self._folded_convs, self.drop_paths):
                kernels, bias = per_level[level_index]
                kernels = [ops.cast(k, x.dtype) for k in kernels]
                if self.separable_conv:
                    y = ops.separable_conv(x, kernels[0], kernels[1], padding="same")
                else:
                    y = ops.conv(x, kernels[0], padding="same")
                y = self._act(add_channel_bias(y, bias))
                x = y if drop_path is None else y + x
            outputs.append(self.predict(x))
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            num_filters=self.num_filters,
            repeats=self.repeats,
            min_level=self.min_level,
            max_level=self.max_level,
            separable_conv=self.separable_conv,
            activation=self.activation,
            drop_path_rate=self.drop_path_rate,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            sync_bn=self.sync_bn,
        )
        return config


@keras.saving.register_keras_serializable(package="efficientdet")
class ClassNet(_LevelSharedHead):
    """Class head: list of features ``[B, H_l, W_l, C]`` (P``min_level`` first) →
    list of float32 logits ``[B, H_l, W_l, num_anchors * num_classes]``.

    Args:
        num_classes: object classes (no background class; sigmoid per class).
        num_anchors: anchors per location (scales × aspect ratios, 9 by default).
        num_filters: width of the conv tower (the BiFPN width).
        repeats: convs before the predict conv (``box_class_repeats``).
        min_level, max_level: levels of the inputs (one BN per level and conv).
        separable_conv: separable (default) or plain 3×3 convs.
        activation: after each BN.
        drop_path_rate: residual drop path on convs 1 … repeats-1 (0 = off, as
            in the official models).
        bn_momentum, bn_epsilon, sync_bn: batch-norm settings.
    """

    _prefix = "class"

    def __init__(
        self, num_classes: int, num_anchors: int = 9, num_filters: int = 64, repeats: int = 3, **kwargs
    ):
        kwargs.setdefault("name", "class_net")
        super().__init__(
            int(num_classes) * int(num_anchors),
            class_bias_initializer(),
            num_filters,
            repeats,
            **kwargs,
        )
        self.num_classes = int(num_classes)
        self.num_anchors = int(num_anchors)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, num_anchors=self.num_anchors)
        return config


@keras.saving.register_keras_serializable(package="efficientdet")
class BoxNet(_LevelSharedHead):
    """Box head: list of features ``[B, H_l, W_l, C]`` → list of float32 box
    regressions ``[B, H_l, W_l, num_anchors * 4]`` as (ty, tx, th, tw) per anchor.

    Args: as :class:`ClassNet`, without ``num_classes``.
    """

    _prefix = "box"

    def __init__(self, num_anchors: int = 9, num_filters: int = 64, repeats: int = 3, **kwargs):
        kwargs.setdefault("name", "box_net")
        super().__init__(4 * int(num_anchors), "zeros", num_filters, repeats, **kwargs)
        self.num_anchors = int(num_anchors)

    def get_config(self):
        config = super().get_config()
        config.update(num_anchors=self.num_anchors)
        return config
