"""EfficientDet: the detector family (networks, presets, task, inference, Python API).

``from efficientdet import Detector`` gives :class:`efficientdet.api.Detector`
(imported on first use, so importing a sub-module stays light).
"""


def __getattr__(name):
    if name == "Detector":
        from efficientdet.api import Detector

        return Detector
    raise AttributeError(f"module 'efficientdet' has no attribute {name!r}")
