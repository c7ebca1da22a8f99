"""The one EfficientNet builder: V1 B0–B7 (EfficientDet backbones), EfficientNet-Lite0–4
(EfficientDet-Lite backbones) and V2 S/M/L/XL/B0–B3.

Builds stem → blocks (MBConv / Fused-MBConv from :mod:`block_specs`) and, for a
classifier, the head. The layer's name is the network name (e.g.
``efficientnet-b0``), so weight paths are the official ones:
``efficientnet-b0/stem/conv2d/kernel``, ``efficientnetv2-s/blocks_7/se/conv2d/bias``,
``efficientnetv2-s/head/dense/kernel``.
"""
import math

import keras

from common.backbones.block_specs import (
    FUSED_MBCONV,
    get_efficientnet_spec,
    round_filters,
    round_repeats,
)
from common.layers.classification_head import ClassificationHead
from common.layers.conv import ConvBnAct
from common.layers.mbconv import FusedMBConv, MBConv


class EfficientNet(keras.layers.Layer):
    """EfficientNet feature extractor or classifier.

    Input: float images ``[B, H, W, 3]``, already normalized (networks are pure;
    preprocessing belongs to the task / export wrapper).

    Output:
      * ``num_classes`` given: float32 logits ``[B, num_classes]``;
      * otherwise: a dict ``{"P<l>": [B, H/2^l, W/2^l, C_l]}`` for each level in
        ``endpoint_levels`` (level l = stride 2^l; e.g. P3–P5 feed BiFPN).

    Args:
        model_name: ``efficientnet-b0``..``b7``, ``efficientnet-lite0``..``lite4`` or
            ``efficientnetv2-{s,m,l,xl,b0..b3}``.
        num_classes: build the classification head with this many classes.
        endpoint_levels: levels returned by the feature extractor (2..5).
        drop_path_rate: stochastic-depth rate of the last block; block i uses
            ``drop_path_rate * i / num_blocks``.
        dropout_rate: dropout before the classifier (default: the network's).
        activation, bn_momentum, bn_epsilon: default to the network's own.
        sync_bn: synchronized batch norm across replicas.
    """

    def __init__(
        self,
        model_name,
        num_classes=None,
        endpoint_levels=(2, 3, 4, 5),
        drop_path_rate=0.2,
        dropout_rate=None,
        activation=None,
        bn_momentum=None,
        bn_epsilon=None,
        sync_bn=False,
        **kwargs,
    ):
        kwargs.setdefault("name", model_name)
        super().__init__(**kwargs)
        spec = get_efficientnet_spec(model_name)
        self.model_name = model_name
        self.num_classes = num_classes
        self.endpoint_levels = tuple(int(l) for l in endpoint_levels)
        self.drop_path_rate = float(drop_path_rate)
        self.dropout_rate = spec.dropout_rate if dropout_rate is None else float(dropout_rate)
        self.activation = activation or spec.activation
        self.bn_momentum = spec.bn_momentum if bn_momentum is None else float(bn_momentum)
        self.bn_epsilon = spec.bn_epsilon if bn_epsilon is None else float(bn_epsilon)
        self.sync_bn = bool(sync_bn)
        bad_levels = [l for l in self.endpoint_levels if not 1 <= l <= 5]
        if bad_levels:
            raise ValueError(f"endpoint_levels must lie in 1..5 (strides 2..32), got {bad_levels}.")

        def filters(n):
            return round_filters(n, spec.width_coefficient, spec.depth_divisor, spec.min_depth)

        norm = dict(
            activation=self.activation,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            sync_bn=self.sync_bn,
        )
        # Lite keeps stem and head at their base widths ("fix_head_stem").
        stem_filters = spec.blocks[0].input_filters
        if not spec.fix_head_stem:
            stem_filters = filters(stem_filters)
        self.stem = ConvBnAct(stem_filters, 3, 2, name="stem", **norm)

        stages = []
        channels = stem_filters  # what the next block really receives
        last = len(spec.blocks) - 1
        for index, stage in enumerate(spec.blocks):
            repeats = stage.repeats
            if not (spec.fix_head_stem and index in (0, last)):
                repeats = round_repeats(repeats, spec.depth_coefficient)
            stages.append((stage, channels, filters(stage.output_filters), repeats))
            channels = filters(stage.output_filters)
        num_blocks = sum(r for *_, r in stages)
        self.blocks = []
        self._block_levels = []
        level = 1
        for stage, in_filters, out_filters, repeats in stages:
            for j in range(repeats):
                index = len(self.blocks)
                strides = stage.strides if j == 0 else 1
                level += int(math.log2(strides))
                block_cls = FusedMBConv if stage.block_type == FUSED_MBCONV else MBConv
                self.blocks.append(
                    block_cls(
                        in_filters if j == 0 else out_filters,
                        out_filters,
                        kernel_size=stage.kernel_size,
                        strides=strides,
                        expand_ratio=stage.expand_ratio,
                        se_ratio=stage.se_ratio if spec.use_se else None,
                        id_skip=stage.id_skip,
                        drop_path_rate=self.drop_path_rate * index / num_blocks,
                        name=f"blocks_{index}",
                        **norm,
                    )
                )
                self._block_levels.append(level)
        self.feature_channels = out_filters
        self.head = None
        if num_classes:
            self.head = ClassificationHead(
                num_classes,
                feature_size=(spec.feature_size if spec.fix_head_stem
                              else filters(spec.feature_size)),
                dropout_rate=self.dropout_rate,
                name="head",
                **norm,
            )
        # Endpoint of a level = output of the last block at that level.
        self._endpoint_block = {}
        for index, block_level in enumerate(self._block_levels):
            if block_level in self.endpoint_levels:
                self._endpoint_block[block_level] = index
        missing = set(self.endpoint_levels) - set(self._endpoint_block)
        if missing and not num_classes:
            raise ValueError(f"{model_name} has no blocks at levels {sorted(missing)}.")

    def call(self, images, training=None):
        x = self.stem(images, training=training)
        endpoints = {}
        wanted = {index: level for level, index in self._endpoint_block.items()}
        for index, block in enumerate(self.blocks):
            x = block(x, training=training)
            if index in wanted:
                endpoints[f"P{wanted[index]}"] = x
        if self.head is not None:
            return self.head(x, training=training)
        return {f"P{l}": endpoints[f"P{l}"] for l in self.endpoint_levels}

    def get_config(self):
        config = super().get_config()
        config.update(
            model_name=self.model_name,
            num_classes=self.num_classes,
            endpoint_levels=self.endpoint_levels,
            drop_path_rate=self.drop_path_rate,
            dropout_rate=self.dropout_rate,
            activation=self.activation,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            sync_bn=self.sync_bn,
        )
        return config
