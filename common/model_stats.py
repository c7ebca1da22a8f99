"""Parameter and multiply-add counts of a Keras model."""
import numpy as np


def count_parameters(model):
    """Returns ``(trainable, non_trainable)`` scalar counts of ``model``'s weights."""
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    non_trainable = sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    return trainable, non_trainable


def count_multiply_adds(model, image_size, batch_size=1):
    """Counts the multiply-adds of convolutions and matrix products in one forward pass.

    Traces the model (inference mode) for a fixed input size and sums, over the
    graph's ``Conv2D``, ``DepthwiseConv2dNative`` and ``MatMul`` ops,
    output elements × reduction length — the convention of the EfficientNet and
    EfficientDet papers (element-wise ops, pooling and batch norm not counted).

    Args:
        model: a Keras model taking ``[B, H, W, 3]`` images.
        image_size: (height, width).
        batch_size: images per pass; the count is divided by it.

    Returns:
        Multiply-adds per image (int).
    """
    import tensorflow as tf

    height, width = image_size
    spec = tf.TensorSpec([batch_size, height, width, 3], tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    total = 0
    for op in graph.get_operations():
        if op.type in ("Conv2D", "DepthwiseConv2dNative"):
            kernel = op.inputs[1].shape.as_list()
            out = op.outputs[0].shape.as_list()
            reduction = kernel[0] * kernel[1] * (kernel[2] if op.type == "Conv2D" else 1)
            total += int(np.prod(out)) * reduction
        elif op.type in ("MatMul", "BatchMatMulV2"):
            a = op.inputs[0].shape.as_list()
            out = op.outputs[0].shape.as_list()
            k = a[-2] if op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x") else a[-1]
            total += int(np.prod(out)) * k
    return total // batch_size

