"""Converts an official google/automl EfficientDet (or backbone-only EfficientNet)
checkpoint once into this project's checkpoint format.

    python -m efficientdet.import_checkpoint --model_name efficientdet-d0 \
        --ckpt efficientdet-d0/ --output_dir ckpts/d0-voc --num_classes 20 --skip_mismatch

The implementation is shared with :mod:`efficientnet_v2.import_checkpoint`
(see :mod:`common.checkpoints.import_cli`).
"""
import sys

from common.checkpoints.import_cli import main
from common.families import FAMILIES
from efficientdet.family import EFFICIENTDET

if __name__ == "__main__":
    FAMILIES.register(EFFICIENTDET)
    sys.exit(main(prog="python -m efficientdet.import_checkpoint",
                  default_model_name="efficientdet-d0"))
