"""``Classifier``: an EfficientNetV2 checkpoint as a Python object (see :mod:`common.export.api`)."""
from __future__ import annotations

import numpy as np

from common.export.api import InferenceModel
from common.export.label_map import label_name


class Classifier(InferenceModel):
    """Image classification with a loaded EfficientNetV2.

    ``Classifier.from_checkpoint(path)`` loads (see
    :meth:`common.export.api.InferenceModel.from_checkpoint`); ``predict`` runs the
    official pre-processing (centre crop, resize), the network and softmax.
    """

    family_name = "efficientnet"

    @classmethod
    def _register_family(cls):
        from common.families import FAMILIES
        from efficientnet_v2.family import EFFICIENTNET

        FAMILIES.register(EFFICIENTNET)

    def predict(self, images, top_k=5):
        """Classifies images.

        Args:
            images: one image, a list or a ``[B, H, W, C]`` batch: file paths or uint8
                arrays, RGB ``[H, W, 3]``, gray ``[H, W]`` / ``[H, W, 1]`` or RGBA
                ``[H, W, 4]``.
            top_k: labels returned per image (at most the wrapper's top-k).

        Returns:
            One dict per image: ``classes`` int ``[k]`` (0-based, most probable
            first), ``probabilities`` ``[k]``, ``names`` (``k`` class names).
        """
        results = []
        for image in self._images(images):
            outputs = self._run(image)
            classes = np.asarray(outputs["top_k_classes"][0][:top_k], np.int64)
            results.append({
                "classes": classes,
                "probabilities": np.asarray(outputs["top_k_probabilities"][0][:top_k],
                                            np.float32),
                "names": [label_name(self.label_map, c) for c in classes],
            })
        return results

    def draw(self, image, prediction):
        """The image with ``prediction`` (one ``predict`` result) written on it; a ``PIL.Image``."""
        from common.export.visualize import draw_classification

        canvas, _ = draw_classification(self._images(image)[0], prediction["classes"],
                                        prediction["probabilities"], self.label_map)
        return canvas
