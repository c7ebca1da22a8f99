"""``Detector``: an EfficientDet checkpoint as a Python object (see :mod:`common.export.api`)."""
from __future__ import annotations

import numpy as np

from common.export.api import InferenceModel
from common.export.label_map import COCO_LABEL_MAP, label_name


class Detector(InferenceModel):
    """Object detection with a loaded EfficientDet.

    ``Detector.from_checkpoint(path)`` loads (see
    :meth:`common.export.api.InferenceModel.from_checkpoint`); ``predict`` runs the
    official pre-processing (letterbox), the network and NMS, and returns boxes in
    each image's own pixels.
    """

    family_name = "efficientdet"

    @classmethod
    def _register_family(cls):
        from common.families import FAMILIES
        from efficientdet.family import EFFICIENTDET

        FAMILIES.register(EFFICIENTDET)

    @classmethod
    def _default_label_map(cls, config):
        return dict(COCO_LABEL_MAP) if config.model.num_classes == 90 else {}

    def predict(self, images, min_score=0.0):
        """Detects objects.

        Args:
            images: one image, a list or a ``[B, H, W, C]`` batch: file paths or uint8
                arrays, RGB ``[H, W, 3]``, gray ``[H, W]`` / ``[H, W, 1]`` or RGBA
                ``[H, W, 4]`` (any sizes; each runs at its own size).
            min_score: drop detections scoring below this.

        Returns:
            One dict per image: ``boxes`` float ``[N, 4]`` (ymin, xmin, ymax, xmax) in
            the image's pixels, ``scores`` ``[N]`` (highest first), ``classes`` int
            ``[N]`` (1-based ids), ``names`` (``N`` class names; the id as text
            when unknown).
        """
        results = []
        for image in self._images(images):
            outputs = self._run(image)
            count = int(outputs["num_detections"][0])
            scores = np.asarray(outputs["detection_scores"][0, :count], np.float32)
            keep = scores >= min_score
            classes = np.asarray(outputs["detection_classes"][0, :count], np.int64)[keep]
            results.append({
                "boxes": np.asarray(outputs["detection_boxes"][0, :count], np.float32)[keep],
                "scores": scores[keep],
                "classes": classes,
                "names": [label_name(self.label_map, c) for c in classes],
            })
        return results

    def draw(self, image, detections, min_score=0.4, max_boxes=100):
        """The image (path or uint8 array) with ``detections`` (one ``predict`` result)
        drawn as labelled boxes; a ``PIL.Image``."""
        from common.export.visualize import draw_detections

        canvas, _ = draw_detections(self._images(image)[0], detections["boxes"],
                                    detections["scores"], detections["classes"],
                                    self.label_map, min_score, max_boxes)
        return canvas
