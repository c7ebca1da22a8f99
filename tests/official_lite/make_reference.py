"""Makes the files of ``tests/official_lite/`` by running google/automl's own code.

Run once, in a separate virtualenv that can import google/automl (not this
project's)::

    python3 -m venv /tmp/automl-venv
    /tmp/automl-venv/bin/pip install tensorflow-cpu==2.15.1 tensorflow-addons==0.23.0 \
        pyyaml absl-py pillow pycocotools "numpy<2"
    git clone https://github.com/google/automl /tmp/automl   # commit 6a54c87
    /tmp/automl-venv/bin/python tests/official_lite/make_reference.py \
        --automl /tmp/automl --output_dir tests/official_lite

It writes:

* ``efficientdet-lite{0,1,2,3,3x,4}_weights.txt``: the official Keras
  detector's ``model.weights`` (name, shape, trainable), 90 classes;
* ``efficientnetv2-xl_weights.txt``: the same for the official EfficientNetV2-XL
  classifier (1000 classes) and its ``count_params()``;
* ``lite0_reference.npz``: EfficientDet-Lite0 at 320x320 with the weights of
  :func:`seeded_weights.seeded_value` on ``RandomState(0).uniform(0, 255)``
  input (not stored: the test draws it again; already 320x320, so the resize is the identity and the
  scale 1): a fixed sample of the raw class and box outputs of every level
  (``{class,box}_shape_l*``; ``{class,box}_index_l*``, flat indices, a seeded
  choice of 5,000 or all; ``{class,box}_value_l*``), and the official
  ``global`` post-processing (``boxes``, ``scores``, ``classes``, ``valid``).
"""
import argparse
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DETECTORS = ("efficientdet-lite0", "efficientdet-lite1", "efficientdet-lite2",
             "efficientdet-lite3", "efficientdet-lite3x", "efficientdet-lite4")
SAMPLES = 5000


def _shape_text(shape):
    return "x".join(str(int(s)) for s in shape) if len(shape) else "scalar"


def write_weight_list(path, weights, header):
    with open(path, "w") as handle:
        handle.write(f"# {header}\n")
        for w in weights:
            handle.write(f"{w.name}\t{_shape_text(w.shape)}\t{int(w.trainable)}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--automl", required=True, help="google/automl checkout")
    parser.add_argument("--output_dir", default=HERE)
    parser.add_argument("--part", choices=("all", "detectors", "xl"), default="all",
                        help="automl's efficientdet/ and efficientnetv2/ both have a top-level "
                             "utils module: each part runs in its own process.")
    args = parser.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    if args.part == "all":
        for part in ("detectors", "xl"):
            subprocess.run([sys.executable, __file__, "--automl", args.automl, "--output_dir",
                            args.output_dir, "--part", part], check=True)
        return
    sys.path.insert(0, HERE)
    if args.part == "xl":
        make_xl(args)
        return
    sys.path.insert(0, os.path.join(args.automl, "efficientdet"))
    import tensorflow as tf
    import hparams_config
    from tf2 import efficientdet_keras
    from seeded_weights import seeded_value

    for name in DETECTORS:
        tf.keras.backend.clear_session()  # fresh layer-name counters: no "stem_1"
        config = hparams_config.get_efficientdet_config(name)
        size = config.image_size if isinstance(config.image_size, int) else 320
        model = efficientdet_keras.EfficientDetModel(config=config)
        model(tf.zeros([1, size, size, 3]), training=False, pre_mode=None, post_mode=None)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        write_weight_list(os.path.join(args.output_dir, f"{name}_weights.txt"), model.weights,
                          f"{name}: google/automl EfficientDetModel weights, 90 classes, "
                          f"{trainable} trainable of {model.count_params()} parameters")
        print(name, trainable, model.count_params())

    # Lite0 reference outputs on seeded weights.
    tf.keras.backend.clear_session()
    config = hparams_config.get_efficientdet_config("efficientdet-lite0")
    model = efficientdet_keras.EfficientDetModel(config=config)
    image = np.random.RandomState(0).uniform(0, 255, (1, 320, 320, 3)).astype(np.float32)
    model(tf.constant(image), training=False, pre_mode="infer", post_mode=None)
    for w in model.weights:
        w.assign(seeded_value(w.name[:-2], w.shape))
    class_outputs, box_outputs = model(tf.constant(image), training=False, pre_mode="infer",
                                       post_mode=None)
    boxes, scores, classes, valid = model(tf.constant(image), training=False, pre_mode="infer",
                                          post_mode="global")
    arrays = dict(boxes=boxes.numpy(), scores=scores.numpy(),
                  classes=classes.numpy(), valid=valid.numpy())
    rng = np.random.RandomState(1)
    for level, (cls, box) in enumerate(zip(class_outputs, box_outputs), start=3):
        for kind, output in (("class", cls), ("box", box)):
            flat = output.numpy().reshape(-1)
            index = np.sort(rng.choice(flat.size, min(SAMPLES, flat.size), replace=False))
            arrays[f"{kind}_shape_l{level}"] = np.array(output.shape, np.int32)
            arrays[f"{kind}_index_l{level}"] = index.astype(np.int32)
            arrays[f"{kind}_value_l{level}"] = flat[index]
    np.savez_compressed(os.path.join(args.output_dir, "lite0_reference.npz"), **arrays)
    print("lite0 detections:", int(valid.numpy()[0]), "top scores", scores.numpy()[0, :5])


def make_xl(args):
    sys.path.insert(0, os.path.join(args.automl, "efficientnetv2"))
    import tensorflow as tf
    import effnetv2_model

    xl = effnetv2_model.EffNetV2Model("efficientnetv2-xl")
    xl(tf.zeros([1, 224, 224, 3]), training=False)
    write_weight_list(os.path.join(args.output_dir, "efficientnetv2-xl_weights.txt"), xl.weights,
                      f"efficientnetv2-xl: google/automl EffNetV2Model weights, 1000 classes, "
                      f"count_params {xl.count_params()}")
    print("efficientnetv2-xl", xl.count_params())


if __name__ == "__main__":
    main()
