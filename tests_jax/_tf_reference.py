"""The TensorFlow side of the cross-backend tests (run by ``conftest.py`` in a subprocess
with ``KERAS_BACKEND=tensorflow``; the JAX test process never imports TensorFlow).

    python tests_jax/_tf_reference.py OUT_DIR FIXTURES_DIR

Writes into OUT_DIR:

* ``d0_keras/``: the official D0 fixture checkpoint (google/automl's TF1 layout, EMA
  weights) exported with ``model_inspect.py --runmode keras_weights``;
* ``v2s_keras/``: EfficientNetV2-S (384), batch-norm statistics set from a seeded
  batch and scales perturbed, saved as one of our training checkpoints, then exported
  through the Python API (``Classifier.export(format="keras_weights")``);
* ``tf_outputs.npz``: what TensorFlow computes from those exports — every variable
  by path (``var:<model>:<path>``), D0's raw outputs on the fixture input, V2-S's
  logits on a seeded input, and ``Detector`` / ``Classifier`` predictions on
  seeded uint8 images (``det:*`` / ``cls:*``).
"""
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ["KERAS_BACKEND"] = "tensorflow"


def detector_images():
    """Two uint8 images: one at the network size, one non-square (letterboxed)."""
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (512, 512, 3), dtype=np.uint8),
            rng.integers(0, 256, (300, 450, 3), dtype=np.uint8)]


def classifier_images():
    rng = np.random.default_rng(8)
    return [rng.integers(0, 256, (400, 360, 3), dtype=np.uint8),
            rng.integers(0, 256, (384, 384, 3), dtype=np.uint8)]


def classifier_input(batch=1, seed=9):
    """Normalized float32 ``[batch, 384, 384, 3]``."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (batch, 384, 384, 3)).astype(np.float32)


def _variables(prefix, network, out):
    for variable in network.weights:
        out[f"var:{prefix}:{variable.path}"] = np.asarray(variable.numpy())


def main(out_dir, fixtures):
    import keras
    import tensorflow as tf

    import model_zoo  # noqa: F401  (registers the families)
    from common.config import build_network, load_config
    from common.export.keras_weights import load_keras_weights
    from common.training.checkpoints import training_checkpoint
    from common.training.ema import ExponentialMovingAverage
    from efficientdet import Detector
    from efficientnet_v2 import Classifier

    outputs = {}
    # --- D0: official fixture checkpoint → Keras weights (the CLI, as a user runs it).
    d0_dir = os.path.join(out_dir, "d0_keras")
    subprocess.run([sys.executable, "model_inspect.py", "--runmode", "keras_weights",
                    "--model_name", "efficientdet-d0", "--ckpt_path",
                    os.path.join(fixtures, "effdet_d0", "tf1_ema_ckpt"), "--export_dir", d0_dir],
                   cwd=REPO, check=True)
    d0 = build_network(load_config(model_name="efficientdet-d0"))
    load_keras_weights(d0, d0_dir)
    _variables("d0", d0, outputs)
    mean = np.array([123.675, 116.28, 103.53], np.float32)
    std = np.array([58.395, 57.12, 57.375], np.float32)
    image = np.load(os.path.join(fixtures, "effdet_d0", "input.npy"))
    raw = d0((image - mean) / std, training=False)
    for level, (cls, box) in enumerate(zip(raw["class_outputs"], raw["box_outputs"]), start=3):
        outputs[f"raw:class_l{level}"] = np.asarray(cls)
        outputs[f"raw:box_l{level}"] = np.asarray(box)
    for i, prediction in enumerate(Detector.from_checkpoint(d0_dir).predict(detector_images())):
        for key in ("boxes", "scores", "classes"):
            outputs[f"det:{i}:{key}"] = prediction[key]

    # --- V2-S: calibrated, perturbed weights → our training checkpoint → Keras weights (the API).
    keras.utils.set_random_seed(0)
    v2_config = load_config(model_name="efficientnetv2-s")
    v2 = build_network(v2_config)
    # Random kernels with unit moving variances make activations grow block by block
    # (logits ~1e5), where float noise decides the outputs. So, as training would, set
    # each batch norm's statistics from a batch (momentum 0 for one training-mode pass),
    # then perturb the scales and shifts: informative logits of a sane size.
    norms = [layer for layer in v2._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    v2(classifier_input(batch=4, seed=10), training=True)
    for layer in norms:
        layer.momentum = 0.99
    rng = np.random.default_rng(3)
    for variable in v2.weights:
        if variable.path.endswith(("gamma", "beta")):
            value = variable.numpy()
            variable.assign(value + rng.normal(0.0, 0.1, value.shape).astype(np.float32))
    ema = ExponentialMovingAverage(v2.weights, decay=0.999)  # shadows = the weights now
    prefix = training_checkpoint(v2, ema).save(os.path.join(out_dir, "v2s_ckpt", "ckpt"))
    Classifier.from_checkpoint(prefix, model_name="efficientnetv2-s").export(
        os.path.join(out_dir, "v2s_keras"), format="keras_weights")
    v2_loaded = build_network(v2_config)
    load_keras_weights(v2_loaded, os.path.join(out_dir, "v2s_keras"))
    _variables("v2s", v2_loaded, outputs)
    outputs["logits"] = np.asarray(v2_loaded(classifier_input(), training=False))
    classifier = Classifier.from_checkpoint(os.path.join(out_dir, "v2s_keras"))
    for i, prediction in enumerate(classifier.predict(classifier_images())):
        outputs[f"cls:{i}:classes"] = prediction["classes"]
        outputs[f"cls:{i}:probabilities"] = prediction["probabilities"]
    np.savez(os.path.join(out_dir, "tf_outputs.npz"), **outputs)
    print("tensorflow", tf.__version__, "keras", keras.__version__)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
