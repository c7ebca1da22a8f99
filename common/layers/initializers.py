"""Weight initializers of the official EfficientNet / EfficientDet code."""
import keras


def conv_kernel_initializer():
    """N(0, sqrt(2 / fan_out)) with fan_out = kh * kw * out_channels."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def dense_kernel_initializer():
    """U(-1/sqrt(units), 1/sqrt(units)) for the classification layer."""
    return keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_out", distribution="uniform"
    )
