"""Gradient checkpointing: a layer's activations recomputed in the backward pass.

A checkpointed layer (see :func:`checkpoint_layer`) keeps only its inputs on
the gradient tape during the forward pass; the backward pass runs the layer
again to get what its gradients need (``tf.recompute_grad``). Memory drops
from every intermediate feature map of the layer to its inputs, for one more
forward pass of it.

Running a layer twice must not change what training computes, so the second
run *replays* the first:

* batch norms normalize with the same batch statistics but do not move their
  moving mean / variance again (:func:`replaying` is True while it runs);
* random layers draw the same numbers (:class:`ReplayableSeedGenerator`: the
  seeds drawn in the forward pass are handed out again, in order).

Only the TensorFlow backend (the one that trains) has ``tf.recompute_grad``;
elsewhere a checkpointed layer runs as usual.
"""
from __future__ import annotations

import contextlib
import threading

import keras

_STATE = threading.local()


class _Run:
    """The seeds one forward run of a checkpointed layer drew, in order."""

    def __init__(self):
        self.seeds = []
        self.replay_index = None  # None: recording; an int: replaying


def _current():
    return getattr(_STATE, "run", None)


@contextlib.contextmanager
def _active(run):
    previous = _current()
    _STATE.run = run
    try:
        yield
    finally:
        _STATE.run = previous


def replaying():
    """True while a checkpointed layer is being recomputed for its gradients."""
    run = _current()
    return run is not None and run.replay_index is not None


@keras.saving.register_keras_serializable(package="effdet_toolkit")
class ReplayableSeedGenerator(keras.random.SeedGenerator):
    """A ``keras.random.SeedGenerator`` whose draws repeat when a checkpointed
    layer is recomputed (outside checkpointed layers: a plain generator)."""

    def next(self, ordered=True):
        run = _current()
        if run is not None and run.replay_index is not None:
            if run.replay_index >= len(run.seeds):
                raise RuntimeError("A recomputed layer drew more random seeds than its forward "
                                   "pass did; its randomness is not replayable.")
            seed = run.seeds[run.replay_index]
            run.replay_index += 1
            return seed
        seed = super().next(ordered=ordered)
        if run is not None:
            run.seeds.append(seed)
        return seed


def checkpoint_layer(layer):
    """Makes ``layer`` recompute its activations in the backward pass of training.

    Its ``call`` is wrapped in place: calls with ``training=True`` on the
    TensorFlow backend go through ``tf.recompute_grad`` (inputs: tensors or
    nested lists of tensors; outputs likewise); every other call is unchanged.
    Calling it twice is harmless.

    Returns:
        ``layer``.
    """
    if getattr(layer, "_recomputes_gradients", False):
        return layer
    if keras.backend.backend() != "tensorflow":
        raise ValueError("Gradient checkpointing needs the TensorFlow backend (training runs "
                         "there); set train.gradient_checkpointing=none.")
    import tensorflow as tf

    original = layer.call

    def call(*args, training=None, **kwargs):
        if not (isinstance(training, bool) and training):
            return original(*args, training=training, **kwargs)
        flat = tf.nest.flatten(args)
        run = _Run()
        calls = []

        def forward(*flat_inputs):
            rebuilt = tf.nest.pack_sequence_as(args, list(flat_inputs))
            # First call: the forward pass (records seeds); later: recomputation.
            run.replay_index = 0 if calls else None
            calls.append(1)
            with _active(run):
                return original(*rebuilt, training=True, **kwargs)

        return tf.recompute_grad(forward)(*flat)

    layer.call = call
    layer._recomputes_gradients = True
    return layer


def _grouped_layers(network, groups):
    return [layer for layer in network._flatten_layers(include_self=False, recursive=True)
            if getattr(layer, "checkpoint_group", None) in groups]


def checkpoint_groups_present(network, groups):
    """Whether ``network`` has any layer of ``groups`` (see :func:`checkpoint_groups`)."""
    return bool(_grouped_layers(network, groups))


def checkpoint_groups(network, groups):
    """Checkpoints every layer of ``network`` whose ``checkpoint_group`` class
    attribute is in ``groups`` (``"backbone"``: each backbone block;
    ``"bifpn"``: each BiFPN cell; ``"head"``: each prediction head).

    Returns:
        The number of layers checkpointed (0 when the network has none of them).
    """
    layers = _grouped_layers(network, groups)
    for layer in layers:
        checkpoint_layer(layer)
    return len(layers)
