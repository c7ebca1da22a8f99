"""COCO box evaluation (pycocotools) of EfficientDet detections.

Ground truth comes from the COCO JSON (``val_json_file``) when given, else it
is rebuilt from the evaluation records themselves (boxes, classes, crowd flags
and areas carried by the input pipeline), so any TFRecord set can be evaluated.
"""
import contextlib
import io
import json

import numpy as np

from common.atomic_files import atomic_write

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                "ARmax1", "ARmax10", "ARmax100", "ARs", "ARm", "ARl")


class CocoEvaluator:
    """Accumulates detections (and optionally ground truth) batch by batch.

    Args:
        val_json_file: COCO-format ground truth; None = build it from the records.
        label_map: optional ``{class_id: name}`` for per-class AP names.
    """

    def __init__(self, val_json_file=None, label_map=None):
        self.val_json_file = val_json_file
        self.label_map = dict(label_map or {})
        self.detections = []
        self.images = {}
        self.annotations = []

    def add(self, source_ids, boxes, scores, classes, num_detections, groundtruth=None):
        """Adds one batch.

        Args:
            source_ids: ``[B]`` integer image ids.
            boxes: ``[B, D, 4]`` (ymin, xmin, ymax, xmax) original-image pixels.
            scores, classes: ``[B, D]`` (classes 1-based).
            num_detections: ``[B]`` valid rows.
            groundtruth: when building ground truth from records, a dict with
                ``boxes [B, M, 4]`` (original pixels), ``classes [B, M]`` (≤ 0 =
                padding), ``is_crowd [B, M]``, ``areas [B, M]``, ``image_sizes [B, 2]``.
        """
        source_ids = np.asarray(source_ids).astype(np.int64)
        for b, image_id in enumerate(source_ids):
            image_id = int(image_id)
            for d in range(int(num_detections[b])):
                ymin, xmin, ymax, xmax = (float(v) for v in boxes[b, d])
                self.detections.append({
                    "image_id": image_id,
                    "category_id": int(classes[b, d]),
                    "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                    "score": float(scores[b, d]),
                })
            if groundtruth is not None and image_id not in self.images:
                height, width = (int(v) for v in groundtruth["image_sizes"][b])
                self.images[image_id] = {"id": image_id, "height": height, "width": width}
                for m, label in enumerate(groundtruth["classes"][b]):
                    if label <= 0:
                        continue
                    ymin, xmin, ymax, xmax = (float(v) for v in groundtruth["boxes"][b, m])
                    area = float(groundtruth["areas"][b, m]) if "areas" in groundtruth else 0.0
                    self.annotations.append({
                        "id": len(self.annotations) + 1,
                        "image_id": image_id,
                        "category_id": int(label),
                        "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                        "area": area if area > 0 else (xmax - xmin) * (ymax - ymin),
                        "iscrowd": int(groundtruth.get("is_crowd", np.zeros_like(
                            groundtruth["classes"]))[b, m]),
                    })

    def state(self):
        """Everything added so far, as plain picklable lists and dicts (see :meth:`merge`)."""
        return {"detections": self.detections, "images": self.images,
                "annotations": self.annotations}

    def merge(self, states):
        """Replaces the contents by the union of ``states`` (one :meth:`state` per process,
        each holding different images); annotation ids are renumbered."""
        self.detections = [d for state in states for d in state["detections"]]
        self.images, self.annotations = {}, []
        for state in states:
            self.images.update(state["images"])
            for annotation in state["annotations"]:
                self.annotations.append(dict(annotation, id=len(self.annotations) + 1))

    def _ground_truth(self):
        from pycocotools.coco import COCO

        coco = COCO()
        if self.val_json_file:
            with open(self.val_json_file) as handle:
                dataset = json.load(handle)
        else:
            categories = sorted({a["category_id"] for a in self.annotations}
                                | {d["category_id"] for d in self.detections})
            dataset = {
                "images": list(self.images.values()),
                "annotations": self.annotations,
                "categories": [{"id": c, "name": self.label_map.get(c, str(c))}
                               for c in categories],
            }
        coco.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def result(self, results_json=None):
        """COCO metrics over everything added.

        Args:
            results_json: optional path to write the detections (COCO results format).

        Returns:
            Dict with ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``,
            ``ARmax1``, ``ARmax10``, ``ARmax100``, ``ARs``, ``ARm``, ``ARl`` (fractions,
            -1 where undefined) and ``AP_/<class name>`` per class.
        """
        from pycocotools.cocoeval import COCOeval

        if results_json:
            with atomic_write(results_json) as handle:
                json.dump(self.detections, handle)
        coco_gt = self._ground_truth()
        image_ids = sorted({d["image_id"] for d in self.detections} | set(self.images))
        if self.val_json_file:
            image_ids = sorted(set(image_ids) & set(coco_gt.getImgIds()))
        if not self.detections:
            return {name: 0.0 for name in METRIC_NAMES}
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            coco_dt = coco_gt.loadRes([dict(d) for d in self.detections])
            evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
            evaluator.params.imgIds = image_ids
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        metrics = {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}
        precision = evaluator.eval["precision"]  # [iou, recall, class, area, max_dets]
        for index, category_id in enumerate(evaluator.params.catIds):
            values = precision[:, :, index, 0, -1]
            values = values[values > -1]
            name = coco_gt.cats.get(category_id, {}).get("name", str(category_id))
            metrics[f"AP_/{name}"] = float(values.mean()) if values.size else -1.0
        self.summary_text = output.getvalue()
        return metrics
