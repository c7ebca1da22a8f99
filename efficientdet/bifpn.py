"""BiFPN: bidirectional weighted feature pyramid (Tan, Pang & Le 2020, §3, Figure 2d).

Pieces, named like the official google/automl variable scopes so weight paths
match its checkpoints:

* :class:`ResampleFeatureMap` — optional 1×1 conv (+bias) + BN when the channel
  count differs, then 3×3 stride-2 ``same`` max-pool (down) or nearest-neighbour
  2× upsampling (up). Used as ``resample_p6`` / ``resample_p7`` on top of the
  backbone and as ``resample_<i>_<input id>_<node id>`` inside a node.
* :class:`FNode` — one fusion node: resample its inputs to its level, fuse them
  (``fastattn``, ``attn``, ``sum`` …; weights ``WSM``, ``WSM_1`` …), then
  ``op_after_combine<node id>``: swish → separable conv (+bias) → BN.
* :class:`BiFPNCell` (``cell_<i>``) — the node graph of :func:`bifpn_nodes`.
* :class:`BiFPN` (``fpn_cells``) — ``num_cells`` cells in a row.

The settings every node of every cell shares travel as one frozen
:class:`BiFPNSettings` (built once from the model config by
:mod:`efficientdet.network`) through :class:`BiFPN` and :class:`BiFPNCell`;
the node-level layers (:class:`FNode`, :class:`OpAfterCombine`,
:class:`ResampleFeatureMap`) keep explicit keyword arguments.

Features are lists ordered from ``min_level`` to ``max_level``, each
``[B, H_l, W_l, C]`` with ``H_l = ceil(H / 2^l)``. Backend-neutral (Keras layers
and ``keras.ops`` only). Upsampling is written with broadcast + reshape, not
``resize``, because the gradient of nearest-neighbour resize has no XLA CPU
kernel.
"""
import dataclasses

import keras
from keras import ops

from common.layers.activations import get_activation
from common.layers.normalization import batch_norm
from efficientdet.model_configs import FPN_WEIGHT_METHODS as WEIGHT_METHODS

_FASTATTN_EPSILON = 1e-4


@dataclasses.dataclass(frozen=True)
class BiFPNSettings:
    """What every BiFPN node shares; the keyword arguments of :class:`FNode`.

    Attributes:
        weight_method: input fusion, one of ``WEIGHT_METHODS`` (see :class:`FNode`).
        separable_conv: separable (default) or plain 3×3 conv after fusion.
        activation: of the op after fusion.
        apply_bn_for_resampling: batch-norm after a resampling 1×1 conv.
        conv_after_downsample: when going down, pool first, then 1×1 conv.
        conv_bn_act_pattern: conv → BN → act after fusion instead of act → conv → BN.
        bn_momentum, bn_epsilon, sync_bn: batch-norm settings.
    """

    weight_method: str = "fastattn"
    separable_conv: bool = True
    activation: str = "swish"
    apply_bn_for_resampling: bool = True
    conv_after_downsample: bool = False
    conv_bn_act_pattern: bool = False
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    sync_bn: bool = False

    def as_kwargs(self):
        """The settings as a ``dict`` of :class:`FNode` keyword arguments."""
        return dataclasses.asdict(self)


def _settings_from(value):
    # get_config stores the settings as a plain dict (JSON-serializable).
    if value is None:
        return BiFPNSettings()
    if isinstance(value, dict):
        return BiFPNSettings(**value)
    if isinstance(value, BiFPNSettings):
        return value
    raise TypeError(f"settings must be a BiFPNSettings, got {type(value).__name__}.")


def upsample_nearest(x, factor=2):
    """Nearest-neighbour upsampling by an integer factor, XLA-friendly.

    Args:
        x: ``[B, H, W, C]``.
        factor: integer scale.

    Returns:
        ``[B, H * factor, W * factor, C]`` with ``out[:, i, j] = x[:, i // factor, j // factor]``.
    """
    if factor == 1:
        return x
    batch, height, width, channels = ops.shape(x)
    x = ops.expand_dims(ops.expand_dims(x, 2), 4)  # [B, H, 1, W, 1, C]
    x = ops.broadcast_to(x, (batch, height, factor, width, factor, channels))
    return ops.reshape(x, (-1, height * factor, width * factor, channels))


def upsample_nearest_2x(x):
    """``[B, H, W, C]`` → ``[B, 2H, 2W, C]``, each pixel repeated 2×2."""
    return upsample_nearest(x, 2)


def bifpn_nodes(min_level=3, max_level=7):
    """The BiFPN node graph for levels ``min_level..max_level``.

    Node ids: the input features are ``0 .. num_levels - 1`` (P``min_level`` first);
    each new node gets the next id. A top-down pass (levels max-1 … min) fuses
    a level's latest node with the latest node above; a bottom-up pass (levels
    min+1 … max) fuses all nodes of a level with the latest node below. For
    P3–P7 this gives 8 nodes (ids 5–12).

    Returns:
        A list of ``(level, input_ids)`` tuples in creation order.
    """
    if max_level <= min_level:
        raise ValueError(f"BiFPN needs max_level > min_level, got {min_level}..{max_level}.")
    ids_at = {level: [level - min_level] for level in range(min_level, max_level + 1)}
    next_id = max_level - min_level + 1
    nodes = []

    def add(level, inputs):
        nonlocal next_id
        nodes.append((level, tuple(inputs)))
        ids_at[level].append(next_id)
        next_id += 1

    for level in range(max_level - 1, min_level - 1, -1):
        add(level, [ids_at[level][-1], ids_at[level + 1][-1]])
    for level in range(min_level + 1, max_level + 1):
        add(level, ids_at[level] + [ids_at[level - 1][-1]])
    return nodes


@keras.saving.register_keras_serializable(package="efficientdet")
class ResampleFeatureMap(keras.layers.Layer):
    """Brings a feature from ``input_level`` to ``target_level`` with ``filters`` channels.

    Input ``[B, H, W, C_in]`` → output ``[B, H', W', filters]`` where ``H'`` is
    ``ceil(H / s)`` going down by ``s = 2^(target_level - input_level)`` and
    ``H * s`` (cropped to ``target_size`` when given) going up. The 1×1 conv
    (with bias, named ``conv2d``) and BN (``bn``) exist only when ``C_in != filters``.

    Args:
        filters: output channels.
        input_level, target_level: pyramid levels (stride 2^level).
        apply_bn: batch-norm after the 1×1 conv.
        conv_after_downsample: when going down, pool first, then 1×1 conv.
        bn_momentum, bn_epsilon, sync_bn: batch-norm settings.
    """

    def __init__(
        self,
        filters: int,
        input_level: int,
        target_level: int,
        apply_bn: bool = True,
        conv_after_downsample: bool = False,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        sync_bn: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.input_level = int(input_level)
        self.target_level = int(target_level)
        self.apply_bn = bool(apply_bn)
        self.conv_after_downsample = bool(conv_after_downsample)
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.sync_bn = sync_bn
        self.conv = None
        self.bn = None

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels != self.filters:
            self.conv = keras.layers.Conv2D(self.filters, 1, padding="same", name="conv2d")
            self.conv.build(input_shape)
            if self.apply_bn:
                self.bn = batch_norm("bn", self.bn_momentum, self.bn_epsilon, self.sync_bn)
                self.bn.build(tuple(input_shape[:-1]) + (self.filters,))

    def fold_batch_norms(self):
        """Folds the batch norm into the 1×1 conv (inference only); returns
        how many were folded (0 or 1)."""
        if self.bn is None:
            return 0
        from common.layers.batch_norm_folding import fold_into_conv

        return fold_into_conv(self.conv, self.bn)

    def _project(self, x, training):
        if self.conv is None:
            return x
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, training=training)
        return x

    def call(self, inputs, target_size=None, training=None):
        """Args: ``inputs`` ``[B, H, W, C_in]``; ``target_size`` optional
        ``(H_t, W_t)`` to crop an upsampled map to (odd sizes)."""
        delta = self.target_level - self.input_level
        x = inputs
        if delta > 0:
            stride = 2**delta
            if not self.conv_after_downsample:
                x = self._project(x, training)
            x = ops.max_pool(x, pool_size=stride + 1, strides=stride, padding="same")
            if self.conv_after_downsample:
                x = self._project(x, training)
            return x
        x = self._project(x, training)
        if delta < 0:
            x = upsample_nearest(x, 2 ** (-delta))
            if target_size is not None and not _same_static_size(x, target_size):
                x = x[:, : target_size[0], : target_size[1], :]
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            input_level=self.input_level,
            target_level=self.target_level,
            apply_bn=self.apply_bn,
            conv_after_downsample=self.conv_after_downsample,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            sync_bn=self.sync_bn,
        )
        return config


def _same_static_size(x, size):
    height, width = x.shape[1], x.shape[2]
    return isinstance(size[0], int) and isinstance(size[1], int) and (height, width) == tuple(size)


@keras.saving.register_keras_serializable(package="efficientdet")
class OpAfterCombine(keras.layers.Layer):
    """The op applied to a fused node: act → 3×3 (separable) conv → BN.

    With ``conv_bn_act_pattern`` the order is conv (no bias) → BN → act instead.
    Sub-layers ``conv`` and ``bn`` (official names). ``[B, H, W, filters]`` in and out.
    """

    def __init__(
        self,
        filters: int,
        separable_conv: bool = True,
        activation: str = "swish",
        conv_bn_act_pattern: bool = False,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        sync_bn: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.separable_conv = bool(separable_conv)
        self.activation = activation
        self.conv_bn_act_pattern = bool(conv_bn_act_pattern)
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.sync_bn = sync_bn
        self._act = get_activation(activation)
        conv_cls = keras.layers.SeparableConv2D if self.separable_conv else keras.layers.Conv2D
        self.conv = conv_cls(
            self.filters, 3, padding="same", use_bias=not self.conv_bn_act_pattern, name="conv"
        )
        self.bn = batch_norm("bn", bn_momentum, bn_epsilon, sync_bn)

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, inputs, training=None):
        x = inputs
        if not self.conv_bn_act_pattern:
            x = self._act(x)
        x = self.bn(self.conv(x), training=training)
        if self.conv_bn_act_pattern:
            x = self._act(x)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def fold_batch_norms(self):
        """Folds the batch norm into the conv (inference only); returns 1."""
        from common.layers.batch_norm_folding import fold_into_conv

        return fold_into_conv(self.conv, self.bn)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            separable_conv=self.separable_conv,
            activation=self.activation,
            conv_bn_act_pattern=self.conv_bn_act_pattern,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            sync_bn=self.sync_bn,
        )
        return config


@keras.saving.register_keras_serializable(package="efficientdet")
class FNode(keras.layers.Layer):
    """One BiFPN node at ``level`` fusing the features ``input_ids``.

    Called on the list of all features so far (``node_id`` of them: the cell's
    inputs, then earlier nodes); returns the new feature ``[B, H_level,
    W_level, filters]``. Sub-layers: ``resample_<i>_<input id>_<node_id>`` per
    input, ``op_after_combine<node_id>``; fusion weights ``WSM``, ``WSM_1`` …

    Args:
        level: pyramid level of the node.
        input_ids: ids of the fused features (see :func:`bifpn_nodes`).
        node_id: this node's id (= number of features before it).
        min_level, max_level: levels of the cell's inputs (id i is level
            ``min_level + i`` for ``i <= max_level - min_level``).
        node_levels: level of every feature id ``0 .. node_id - 1``.
        filters: BiFPN width.
        weight_method: ``fastattn`` (ReLU weights / (sum + 1e-4)), ``attn``
            (softmax), ``sum``, or the per-channel ``channel_fastattn`` /
            ``channel_attn``.
        separable_conv, activation, apply_bn_for_resampling,
        conv_after_downsample, conv_bn_act_pattern, bn_momentum, bn_epsilon,
        sync_bn: as :class:`BiFPNSettings` (a cell passes ``settings.as_kwargs()``).
    """

    def __init__(
        self,
        level: int,
        input_ids: tuple,
        node_id: int,
        node_levels: tuple,
        min_level: int,
        filters: int,
        weight_method: str = "fastattn",
        separable_conv: bool = True,
        activation: str = "swish",
        apply_bn_for_resampling: bool = True,
        conv_after_downsample: bool = False,
        conv_bn_act_pattern: bool = False,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        sync_bn: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if weight_method not in WEIGHT_METHODS:
            raise ValueError(
                f"Unknown BiFPN weight_method {weight_method!r}; valid: {', '.join(WEIGHT_METHODS)}."
            )
        self.level = int(level)
        self.input_ids = tuple(int(i) for i in input_ids)
        self.node_id = int(node_id)
        self.node_levels = tuple(int(l) for l in node_levels)
        self.min_level = int(min_level)
        self.filters = int(filters)
        self.weight_method = weight_method
        self.separable_conv = separable_conv
        self.activation = activation
        self.apply_bn_for_resampling = apply_bn_for_resampling
        self.conv_after_downsample = conv_after_downsample
        self.conv_bn_act_pattern = conv_bn_act_pattern
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.sync_bn = sync_bn
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, sync_bn=sync_bn)
        self.resamples = [
            ResampleFeatureMap(
                self.filters,
                input_level=self.node_levels[input_id],
                target_level=self.level,
                apply_bn=apply_bn_for_resampling,
                conv_after_downsample=conv_after_downsample,
                name=f"resample_{i}_{input_id}_{self.node_id}",
                **bn,
            )
            for i, input_id in enumerate(self.input_ids)
        ]
        self.op_after_combine = OpAfterCombine(
            self.filters,
            separable_conv=separable_conv,
            activation=activation,
            conv_bn_act_pattern=conv_bn_act_pattern,
            name=f"op_after_combine{self.node_id}",
            **bn,
        )
        self.fusion_weights = []

    def build(self, input_shape):
        shapes = list(input_shape)
        if len(shapes) != self.node_id:
            raise ValueError(
                f"{self.name} expects {self.node_id} input features, got {len(shapes)}."
            )
        if self.weight_method != "sum":
            shape = (self.filters,) if self.weight_method.startswith("channel_") else ()
            for i in range(len(self.input_ids)):
                self.fusion_weights.append(
                    self.add_weight(
                        name="WSM" if i == 0 else f"WSM_{i}",
                        shape=shape,
                        initializer="ones",
                    )
                )
        for layer, input_id in zip(self.resamples, self.input_ids):
            layer.build(shapes[input_id])
        target = shapes[self.level - self.min_level]
        self.op_after_combine.build(tuple(target[:-1]) + (self.filters,))

    def _fuse(self, nodes):
        dtype = nodes[0].dtype
        if self.weight_method == "sum":
            return _add_n(nodes)
        weights = [ops.cast(w, dtype) for w in self.fusion_weights]
        if self.weight_method.endswith("fastattn"):
            weights = [ops.relu(w) for w in weights]
            total = _add_n(weights) + ops.cast(_FASTATTN_EPSILON, dtype)
            return _add_n([node * w / total for node, w in zip(nodes, weights)])
        # attn / channel_attn: softmax over the inputs.
        axis = -1 if self.weight_method == "channel_attn" else 0
        normalized = ops.softmax(ops.stack(weights, axis=axis), axis=axis)
        return ops.sum(ops.stack(nodes, axis=-1) * normalized, axis=-1)

    def call(self, feats, training=None):
        target_size = ops.shape(feats[self.level - self.min_level])[1:3]
        nodes = [
            layer(feats[input_id], target_size=target_size, training=training)
            for layer, input_id in zip(self.resamples, self.input_ids)
        ]
        return self.op_after_combine(self._fuse(nodes), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            level=self.level,
            input_ids=self.input_ids,
            node_id=self.node_id,
            node_levels=self.node_levels,
            min_level=self.min_level,
            filters=self.filters,
            weight_method=self.weight_method,
            separable_conv=self.separable_conv,
            activation=self.activation,
            apply_bn_for_resampling=self.apply_bn_for_resampling,
            conv_after_downsample=self.conv_after_downsample,
            conv_bn_act_pattern=self.conv_bn_act_pattern,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            sync_bn=self.sync_bn,
        )
        return config


def _add_n(tensors):
    # Left-to-right pairwise sum, the same order as the official code.
    total = tensors[0]
    for t in tensors[1:]:
        total = total + t
    return total


@keras.saving.register_keras_serializable(package="efficientdet")
class BiFPNCell(keras.layers.Layer):
    """One BiFPN layer: list of features P``min_level``..P``max_level`` → same-shaped
    list with ``filters`` channels (each level's last node). Nodes ``fnode<j>``.

    Args:
        filters: BiFPN width.
        min_level, max_level: levels of the input list.
        settings: what every node shares (:class:`BiFPNSettings`).
    """

    # train.gradient_checkpointing=bifpn recomputes each cell (common.layers.recompute).
    checkpoint_group = "bifpn"

    def __init__(
        self,
        filters: int,
        min_level: int = 3,
        max_level: int = 7,
        settings: BiFPNSettings = BiFPNSettings(),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.settings = _settings_from(settings)
        levels = list(range(self.min_level, self.max_level + 1))
        self.fnodes = []
        for j, (level, input_ids) in enumerate(bifpn_nodes(self.min_level, self.max_level)):
            self.fnodes.append(
                FNode(
                    level,
                    input_ids,
                    node_id=len(levels),
                    node_levels=tuple(levels),
                    min_level=self.min_level,
                    filters=self.filters,
                    name=f"fnode{j}",
                    **self.settings.as_kwargs(),
                )
            )
            levels.append(level)
        # Output of a level = the last node computed at that level.
        self._output_ids = [
            max(i for i, l in enumerate(levels) if l == level)
            for level in range(self.min_level, self.max_level + 1)
        ]

    def build(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        num_levels = self.max_level - self.min_level + 1
        if len(shapes) != num_levels:
            raise ValueError(
                f"{self.name} expects {num_levels} features (P{self.min_level}–P{self.max_level}), "
                f"got {len(shapes)}."
            )
        for node in self.fnodes:
            node.build(shapes)
            shapes.append(shapes[node.level - self.min_level][:-1] + (self.filters,))

    def call(self, feats, training=None):
        feats = list(feats)
        for node in self.fnodes:
            feats.append(node(feats, training=training))
        return [feats[i] for i in self._output_ids]

    def compute_output_shape(self, input_shape):
        return [tuple(s[:-1]) + (self.filters,) for s in input_shape]

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            min_level=self.min_level,
            max_level=self.max_level,
            settings=self.settings.as_kwargs(),
        )
        return config


@keras.saving.register_keras_serializable(package="efficientdet")
class BiFPN(keras.layers.Layer):
    """``num_cells`` BiFPN cells (``cell_0`` …). Default layer name ``fpn_cells``.

    Input: list of ``max_level - min_level + 1`` features ``[B, H_l, W_l, C_l]``
    (P``min_level`` first; channels may differ). Output: the same levels, each
    ``[B, H_l, W_l, filters]``.

    Args:
        filters: BiFPN width (``fpn_num_filters``).
        num_cells: cells in a row (``fpn_cell_repeats``).
        min_level, max_level: levels of the input list.
        settings: what every node of every cell shares (:class:`BiFPNSettings`).
    """

    def __init__(
        self,
        filters: int,
        num_cells: int,
        min_level: int = 3,
        max_level: int = 7,
        settings: BiFPNSettings = BiFPNSettings(),
        **kwargs,
    ):
        kwargs.setdefault("name", "fpn_cells")
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.num_cells = int(num_cells)
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.settings = _settings_from(settings)
        self.cells = [
            BiFPNCell(
                self.filters,
                min_level=self.min_level,
                max_level=self.max_level,
                settings=self.settings,
                name=f"cell_{i}",
            )
            for i in range(self.num_cells)
        ]

    def build(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        for cell in self.cells:
            cell.build(shapes)
            shapes = cell.compute_output_shape(shapes)

    def call(self, feats, training=None):
        feats = list(feats)
        for cell in self.cells:
            feats = cell(feats, training=training)
        return feats

    def compute_output_shape(self, input_shape):
        return [tuple(s[:-1]) + (self.filters,) for s in input_shape]

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            num_cells=self.num_cells,
            min_level=self.min_level,
            max_level=self.max_level,
            settings=self.settings.as_kwargs(),
        )
        return config
