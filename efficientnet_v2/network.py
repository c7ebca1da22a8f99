"""The pure EfficientNet(V2) classifier network as a functional Keras model."""
import keras

from common.backbones import EfficientNet


def build_classifier(
    model_name="efficientnetv2-s",
    num_classes=1000,
    image_size=None,
    dropout_rate=None,
    drop_path_rate=0.2,
    activation=None,
    bn_momentum=None,
    bn_epsilon=None,
    sync_bn=False,
):
    """Builds ``images [B, H, W, 3] (normalized float) → logits [B, num_classes] (float32)``.

    Args:
        model_name: ``efficientnetv2-{s,m,l,b0..b3}`` or ``efficientnet-b0..b7``.
        num_classes: classifier width.
        image_size: (height, width) of the input, or None for any size.
        dropout_rate, drop_path_rate, activation, bn_momentum, bn_epsilon, sync_bn:
            see :class:`common.backbones.EfficientNet` (None = the network's own).

    Returns:
        A functional ``keras.Model`` named ``model_name``; weight paths are the
        official ones (``efficientnetv2-s/blocks_0/conv2d/kernel`` ...).
    """
    height, width = image_size if image_size else (None, None)
    images = keras.Input((height, width, 3), name="images")
    network = EfficientNet(
        model_name,
        num_classes=num_classes,
        drop_path_rate=drop_path_rate,
        dropout_rate=dropout_rate,
        activation=activation,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        sync_bn=sync_bn,
    )
    return keras.Model(images, network(images), name=model_name)


def build_classifier_from_config(model_config, sync_bn=False):
    """Builds the classifier described by a ``ClassificationModelConfig``.

    The input size is left dynamic: progressive resizing trains at several sizes
    and evaluates at ``model_config.image_size``.
    """
    return build_classifier(
        model_name=model_config.name,
        num_classes=model_config.num_classes,
        image_size=None,
        dropout_rate=model_config.dropout_rate,
        drop_path_rate=model_config.drop_path_rate,
        activation=model_config.activation,
        bn_momentum=model_config.bn_momentum,
        bn_epsilon=model_config.bn_epsilon,
        sync_bn=sync_bn,
    )
