"""Base of the inference wrappers: uint8 images → preprocessing → pure network → outputs.

Networks are pure (ARCHITECTURE.md): an inference wrapper *holds* a network, it never
subclasses it. The wrapper is a ``tf.Module`` so that ``tf.saved_model.save``
stores exactly the network's variables and the wrapper's graph functions (the
Keras layer objects themselves stay out of the SavedModel object graph, which
halves the export time and keeps the file free of Keras internals).

A model family subclasses :class:`InferenceModule` and implements
``preprocess_batch`` / ``preprocess_single`` / ``raw_outputs`` /
``postprocess``; everything else (the serving functions for a batch of uint8
images, for encoded JPEG/PNG strings, and for raw outputs) is shared.
"""
from __future__ import annotations

import tensorflow as tf

from common.detection.image_size import parse_image_size


POSTPROCESS_SCOPE = "postprocess"  # name scope of the post-processing ops (int8 keeps them float)


class _Untracked:
    """Hides an object from ``tf.Module`` tracking (only its variables are saved)."""

    def __init__(self, value):
        self.value = value


def fold_batch(images: tf.Tensor) -> tf.Tensor:
    """``[B, H, W, C]`` → ``[H, W, B * C]``.

    The shared preprocessing (:mod:`dataset.preprocessing`) works on one image
    ``[H, W, C]``; images of one batch share their size and so the resize / pad /
    crop geometry, which treats channels independently. Folding the batch into
    the channels applies that single implementation to the whole batch without
    a per-image loop (a loop becomes a ``WHILE`` op, which TFLite's int8
    calibrator cannot handle).
    """
    shape = tf.shape(images)
    return tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [shape[1], shape[2], -1])


def unfold_batch(folded: tf.Tensor, batch_size, channels: int = 3) -> tf.Tensor:
    """Inverse of :func:`fold_batch`: ``[H, W, B * C]`` → ``[B, H, W, C]``."""
    shape = tf.shape(folded)
    unfolded = tf.reshape(folded, [shape[0], shape[1], batch_size, channels])
    return tf.transpose(unfolded, [2, 0, 1, 3])


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes one JPEG / PNG / GIF / BMP string to uint8 ``[H, W, 3]`` (graph mode).

    Grayscale and RGBA images become RGB; an animated GIF gives its first frame.
    """
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


class InferenceModule(tf.Module):
    """Pure network + in-graph pre- and post-processing.

    Args:
        network: the pure Keras network (normalized float images → raw outputs).
        image_size: the network input ``(height, width)``.
        name: module name.

    Subclasses set ``task`` (``"detection"`` / ``"classification"``, recorded in
    exports) and ``outputs_boxes`` (post-processing is box decoding + NMS, so
    exporters keep NMS in the graph and ``infer`` draws boxes), and implement
    the four hooks below. All image inputs are ``[B, H, W, 3]`` RGB, uint8 (or any
    real dtype holding 0–255 values when called from Python).
    """

    task = None
    outputs_boxes = False

    def __init__(self, network, image_size, name=None):
        super().__init__(name=name)
        self._network = _Untracked(network)
        # The variables (not the layers) are what the SavedModel must hold.
        self.network_variables = [getattr(v, "value", v) for v in network.weights]
        self.image_size = parse_image_size(image_size)

    @property
    def network(self):
        """The wrapped pure Keras network."""
        return self._network.value

    # ------------------------------------------------------------------ hooks
    def preprocess_batch(self, images):
        """``[B, H, W, 3]`` images of one size → (normalized ``[B, h, w, 3]`` float32,
        per-image ``[B]`` float32 side information for ``postprocess``)."""
        raise NotImplementedError

    def preprocess_single(self, image):
        """One ``[H, W, 3]`` image → (``[h, w, 3]`` float32, scalar float32)."""
        raise NotImplementedError

    def raw_outputs(self, normalized):
        """Normalized ``[B, h, w, 3]`` → dict of the network's raw output tensors."""
        raise NotImplementedError

    def postprocess(self, raw, side_info, unroll=False):
        """Raw outputs + ``[B]`` side information → dict of final outputs.

        ``unroll``: build it without ``WHILE`` loops (Python loops over a static
        batch), for TFLite int8 calibration; the outputs are the same.
        """
        raise NotImplementedError

    # ------------------------------------------------------------- pipelines
    def __call__(self, images, unroll=False):
        """End to end: ``[B, H, W, 3]`` images of one size → final outputs dict
        (``unroll``: see :meth:`postprocess`; needs a static batch size)."""
        normalized, side_info = self.preprocess_batch(images)
        raw = self.raw_outputs(normalized)
        with tf.name_scope(POSTPROCESS_SCOPE):
            return self.postprocess(raw, side_info, unroll=unroll)

    def preprocess_encoded(self, encoded):
        """``[B]`` encoded image strings (any sizes) → normalized batch, side info."""
        height, width = self.image_size

        def one(string):
            return self.preprocess_single(decode_image(string))

        return tf.map_fn(
            one,
            encoded,
            fn_output_signature=(
                tf.TensorSpec([height, width, 3], tf.float32),
                tf.TensorSpec([], tf.float32),
            ),
        )

    def predict_encoded(self, encoded):
        """End to end for ``[B]`` encoded JPEG / PNG strings of different sizes."""
        normalized, side_info = self.preprocess_encoded(encoded)
        return self.postprocess(self.raw_outputs(normalized), side_info)

    # ---------------------------------------------------- graph functions
    def serving_functions(self):
        """The SavedModel signatures, as concrete functions.

        Returns:
            ``{"serving_default": uint8 [None, None, None, 3] → final outputs,
            "serve_encoded": string [None] → final outputs,
            "raw_outputs": float32 normalized [None, h, w, 3] → raw outputs}``.
        """
        height, width = self.image_size
        # The network is traced once; the other two signatures call that function.
        raw = tf.function(self.raw_outputs, input_signature=[
            tf.TensorSpec([None, height, width, 3], tf.float32, name="normalized_images")])

        def from_images(images):
            normalized, side_info = self.preprocess_batch(images)
            return self.postprocess(raw(normalized), side_info)

        def from_encoded(encoded_images):
            normalized, side_info = self.preprocess_encoded(encoded_images)
            return self.postprocess(raw(normalized), side_info)

        return {
            "serving_default": tf.function(from_images).get_concrete_function(
                tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")),
            "serve_encoded": tf.function(from_encoded).get_concrete_function(
                tf.TensorSpec([None], tf.string, name="encoded_images")),
            "raw_outputs": raw.get_concrete_function(),
        }

    def fixed_size_function(self, batch_size=None, include_postprocess=True):
        """A concrete function over uint8 images of exactly the network size.

        With static height and width, the letterbox / crop arithmetic folds to
        constants, which TFLite and ONNX converters need. With a static
        ``batch_size`` the post-processing is built unrolled (no ``WHILE`` op,
        see :meth:`postprocess`).

        Args:
            batch_size: static batch size, or None for a dynamic one.
            include_postprocess: final outputs (True) or raw network outputs.
        """
        height, width = self.image_size
        if include_postprocess:
            unroll = batch_size is not None
            fn = tf.function(lambda images: self(images, unroll=unroll))
        else:
            fn = tf.function(lambda images: self.raw_outputs(self.preprocess_batch(images)[0]))
        return fn.get_concrete_function(
            tf.TensorSpec([batch_size, height, width, 3], tf.uint8, name="images"))
