"""Export, inference and benchmark tools behind ``model_inspect.py``.

* :mod:`common.export.module` — the base of the inference wrappers (a
  ``tf.Module`` holding a pure network; pre- and post-processing in the graph);
* :mod:`common.export.saved_model`, :mod:`common.export.tflite`,
  :mod:`common.export.onnx_export` — the three file formats;
* :mod:`common.export.predictors` — one calling convention for a wrapper, a
  SavedModel, a TFLite or an ONNX file;
* :mod:`common.export.infer`, :mod:`common.export.visualize`,
  :mod:`common.export.label_map` — annotated images;
* :mod:`common.export.video` — annotated videos (OpenCV, optional);
* :mod:`common.export.benchmark` — timings;
* :mod:`common.export.outputs` — output paths checked before the work, and
  complete-or-absent files for writers that need the real file name.

Like the rest of ``common`` it imports nothing from the model packages; the
model family's wrapper is found by task name (:mod:`common.export.factory`).
"""
