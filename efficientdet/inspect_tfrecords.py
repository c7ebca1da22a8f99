"""Entry point of the record inspector for detection records (EfficientDet anchors).

    python -m efficientdet.inspect_tfrecords --file_pattern 'data/sample/detection/tfrecords/train-*' \
        --model_name efficientdet-d1 --num_classes 3 --output_dir /tmp/inspect

The tool itself is :mod:`dataset.inspect_tfrecords`; this module only registers
the EfficientDet family, which resolving ``--model_name`` / ``--config`` needs
(the ``dataset`` layer cannot import a model package).
"""
import sys

from common.families import FAMILIES
from dataset.inspect_tfrecords import main
from efficientdet.family import EFFICIENTDET

if __name__ == "__main__":
    FAMILIES.register(EFFICIENTDET)
    sys.exit(main())
