"""Evaluation pictures: ground truth next to detections (TensorBoard and
``model_dir/eval_pictures``; the files of a real run are checked by the demo
learning test)."""
import types

import numpy as np
import tensorflow as tf

from dataset.preprocessing import normalize_detection_image
from efficientdet.experiment import preview_pictures


def test_preview_pictures_show_ground_truth_left_and_detections_right():
    rng = np.random.RandomState(0)
    raw = rng.randint(0, 256, size=(2, 32, 40, 3)).astype(np.uint8)
    images = normalize_detection_image(tf.constant(raw))
    scale = 2.0  # original pixels per network pixel
    labels = {
        "image_scales": tf.constant([scale, scale]),
        "groundtruth_boxes": tf.constant([[[4, 4, 20, 20], [-1, -1, -1, -1]]] * 2, tf.float32) * scale,
        "groundtruth_classes": tf.constant([[1, -1]] * 2, tf.float32),
    }
    detections = types.SimpleNamespace(
        boxes=tf.constant([[[10, 20, 30, 38], [0, 0, 5, 5]]] * 2, tf.float32) * scale,
        scores=tf.constant([[0.9, 0.1]] * 2),  # the second is under min_score
        classes=tf.constant([[2, 1]] * 2))
    pictures = preview_pictures(images, labels, detections, max_images=1, min_score=0.3)
    assert pictures.shape == (1, 32, 80, 3) and pictures.dtype == np.uint8
    truth, found = pictures[0, :, :40], pictures[0, :, 40:]
    changed_truth = np.any(truth != raw[0], axis=-1)
    changed_found = np.any(found != raw[0], axis=-1)
    # Denormalization restores the input exactly where nothing is drawn.
    assert changed_truth[25:, 25:].sum() == 0 and changed_found[:8, :8].sum() == 0
    assert changed_truth[4, 4:21].all()        # ground-truth box edge (network frame)
    assert changed_found[30, 20:39].all()      # detection box bottom edge
    assert not changed_found[5, 0:5].any()     # the 0.1 detection is not drawn


def test_small_inputs_are_enlarged_for_the_picture_files():
    images = normalize_detection_image(tf.zeros((3, 32, 40, 3), tf.uint8))
    labels = {"image_scales": tf.ones([3]),
              "groundtruth_boxes": tf.constant([[[4, 4, 20, 20]]] * 3, tf.float32),
              "groundtruth_classes": tf.ones([3, 1])}
    detections = types.SimpleNamespace(boxes=tf.constant([[[4, 4, 20, 20]]] * 3, tf.float32),
                                       scores=tf.constant([[0.9]] * 3), classes=tf.ones([3, 1]))
    pictures = preview_pictures(images, labels, detections, max_images=2, min_side=100)
    assert pictures.shape == (2, 128, 320, 3)  # x4: the smallest whole factor reaching 100
    truth = np.any(pictures[0, :, :160] != 0, axis=-1)
    assert truth[16, 16:81].all() and not truth[100:, 100:].any()  # the box, x4
