"""Converts an official google/automl EfficientNetV2 (or EfficientNet) classifier
checkpoint once into this project's checkpoint format.

    python -m efficientnet_v2.import_checkpoint --model_name efficientnetv2-s \
        --ckpt efficientnetv2-s-21k/ --output_dir ckpts/v2s-flowers --num_classes 5 \
        --skip_mismatch

The implementation is shared with :mod:`efficientdet.import_checkpoint`
(see :mod:`common.checkpoints.import_cli`).
"""
import sys

from common.checkpoints.import_cli import main
from common.families import FAMILIES
from efficientnet_v2.family import EFFICIENTNET

if __name__ == "__main__":
    FAMILIES.register(EFFICIENTNET)
    sys.exit(main(prog="python -m efficientnet_v2.import_checkpoint",
                  default_model_name="efficientnetv2-s"))
