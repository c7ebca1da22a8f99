"""Entry point of the anchor analysis for detection records (EfficientDet anchors).

    python -m efficientdet.analyze_boxes --file_pattern 'data/train-*' --model_name efficientdet-d0 \
        [--config configs/x.yaml] [--hparams ...] [--label_map labels.json] --output_dir runs/anchors

The tool itself is :mod:`dataset.analyze_boxes`; this module only registers
the EfficientDet family, which resolving ``--model_name`` / ``--config`` needs
(the ``dataset`` layer cannot import a model package).
"""
import sys

from common.families import FAMILIES
from dataset.analyze_boxes import main
from efficientdet.family import EFFICIENTDET

if __name__ == "__main__":
    FAMILIES.register(EFFICIENTDET)
    sys.exit(main())
