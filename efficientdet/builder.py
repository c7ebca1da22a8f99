"""Config → network: the only place that reads a ``DetectionModelConfig``."""
from efficientdet.model_configs import get_detector_params
from efficientdet.network import build_efficientdet


def build_detector_from_config(model_config, sync_bn=False):
    """Builds the pure EfficientDet network described by ``model_config``.

    Every architecture field of the config that the network builder knows is
    passed explicitly, so a YAML or ``--hparams`` change (e.g.
    ``fpn_weight_method=sum``) reaches the network.
    """
    known = set(get_detector_params(model_config.name)) - {"name", "image_size", "sync_bn"}
    overrides = {key: getattr(model_config, key) for key in known if hasattr(model_config, key)}
    return build_efficientdet(
        model_config.name,
        num_classes=model_config.num_classes,
        image_size=model_config.image_size,
        sync_bn=sync_bn,
        **overrides,
    )
