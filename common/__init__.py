"""Code shared by EfficientDet and EfficientNetV2; imports nothing from either."""
