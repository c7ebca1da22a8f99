"""EfficientNetV2: the classifier family (network, presets, task, inference, Python API).

``from efficientnet_v2 import Classifier`` gives :class:`efficientnet_v2.api.Classifier`
(imported on first use, so importing a sub-module stays light).
"""


def __getattr__(name):
    if name == "Classifier":
        from efficientnet_v2.api import Classifier

        return Classifier
    raise AttributeError(f"module 'efficientnet_v2' has no attribute {name!r}")
