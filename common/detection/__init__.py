"""Model-independent detection geometry shared by the detectors and the input pipelines.

Modules: :mod:`~common.detection.image_size` (the size parser),
:mod:`~common.detection.anchors` (multi-level anchors),
:mod:`~common.detection.box_coding` (Faster R-CNN box codes),
:mod:`~common.detection.target_assigner` (training targets inside tf.data),
:mod:`~common.detection.nms` (NMS method names and settings) and
:mod:`~common.detection.postprocess` (decoding + NMS). Nothing here imports a
model family or :mod:`dataset`; they import this package. The package itself
imports nothing, so importing the TensorFlow-free modules stays cheap.
"""
