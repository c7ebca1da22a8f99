"""TFLite conversion: builtin ops only, parity with Keras, fp16 and int8.

Tolerances: fp32 raw/logits 1e-4 absolute (TFLite's kernels sum in another
order); fp32 detections up to near-tie order with boxes within 1e-2 px and
scores within 1e-5; fp16 weights: logits within 5e-2; int8: correlation of the
raw outputs with fp32 above 0.99 (a quantized model is not expected to match
to a tolerance). Every D0 file carries its NMS (fp32, fp16, int8); a file with
a static batch size has no ``WHILE`` op. The int8 detector's accuracy on real
objects is tested in ``test_int8_detector.py``.
"""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common.export import tflite
from common.export.errors import ExportError
from common.export.predictors import KerasPredictor, TFLitePredictor


def _non_builtin(ops):
    return [op for op in ops if op.startswith(("CUSTOM", "Flex"))]


@pytest.mark.slow
def test_d0_tflite_fp32_matches_keras_with_nms_inside(d0_module, make_images, same_detections):
    flatbuffer = tflite.convert_to_tflite(d0_module, "none")
    ops = tflite.op_counts(flatbuffer)
    assert not _non_builtin(ops), ops
    assert ops["NON_MAX_SUPPRESSION_V5"] >= 1 and ops["WHILE"] >= 1  # NMS in the file
    lite, keras_model = TFLitePredictor(flatbuffer), KerasPredictor(d0_module)
    assert lite.image_size == (128, 128) and not lite.returns_raw
    for batch in (1, 2):
        images = make_images(batch, 128, 128, seed=10 + batch)
        expected, actual = keras_model(images), lite(images)
        assert expected["num_detections"].min() > 10
        same_detections(actual, expected, box_atol=1e-2, score_atol=1e-5)


def test_v2_tflite_fp32_matches_keras(v2_module, make_images):
    images = make_images(2, 96, 96, seed=4)
    expected = KerasPredictor(v2_module)(images)
    flatbuffer = tflite.convert_to_tflite(v2_module, "none")
    assert not _non_builtin(tflite.op_counts(flatbuffer))
    actual = TFLitePredictor(flatbuffer)(images)
    np.testing.assert_allclose(actual["logits"], expected["logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(actual["probabilities"], expected["probabilities"], atol=1e-5)
    np.testing.assert_array_equal(actual["top_k_classes"], expected["top_k_classes"])


@pytest.mark.slow
def test_v2_tflite_fp16_is_half_the_size_and_close(v2_module, make_images):
    images = make_images(2, 96, 96, seed=4)
    expected = KerasPredictor(v2_module)(images)
    fp16_bytes = tflite.convert_to_tflite(v2_module, "fp16")
    fp32_bytes = sum(int(np.prod(v.shape)) * 4 for v in v2_module.network_variables)
    assert len(fp16_bytes) < 0.6 * fp32_bytes
    np.testing.assert_allclose(TFLitePredictor(fp16_bytes)(images)["logits"], expected["logits"],
                               atol=5e-2, rtol=0)


@pytest.mark.slow
def test_d0_tflite_runs_pictures_of_other_sizes_like_the_wrapper(d0_module, make_images,
                                                                 same_detections):
    """Pictures are letterboxed to the file's size in NumPy (uint8) and the boxes scaled back
    to the picture's pixels: the file then stands in for the wrapper in --runmode infer."""
    lite = TFLitePredictor(tflite.convert_to_tflite(d0_module, "none"))
    picture = make_images(1, 64, 128, seed=21)  # scale 1: only the padding differs
    with pytest.raises(ValueError, match="takes 128x128 images, got 64x128"):
        lite(picture)
    lite.postprocess_module = d0_module
    keras_model = KerasPredictor(d0_module)
    same_detections(lite(picture), keras_model(picture), box_atol=0.05, score_atol=1e-3)
    doubled = np.repeat(np.repeat(picture, 2, axis=1), 2, axis=2)  # 128x256: scale 1/2
    expected, actual = keras_model(doubled), lite(doubled)
    assert expected["detection_boxes"][0, :, 2:].max() > 130  # in the picture's pixels
    same_detections(actual, expected, box_atol=0.1, score_atol=1e-3)


def test_v2_tflite_fits_pictures_with_the_crop_rule(v2_module, make_images):
    """A 96x96 classifier (center crop on): the picture's largest central window of the
    network's aspect ratio is resized to 96x96; the file's own crop takes the rest."""
    lite = TFLitePredictor(tflite.convert_to_tflite(v2_module, "none"), v2_module)
    picture = np.repeat(np.repeat(make_images(1, 48, 64, seed=5), 2, axis=1), 2, axis=2)
    fitted, scales = v2_module.fit_pictures(picture, (96, 96))
    np.testing.assert_array_equal(fitted, picture[:, :, 16:112])  # 96x128 → central 96x96
    np.testing.assert_array_equal(scales, [1.0])
    expected = KerasPredictor(v2_module)(picture)
    actual = lite(picture)
    np.testing.assert_allclose(actual["logits"], expected["logits"], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(actual["top_k_classes"], expected["top_k_classes"])
    other = make_images(1, 150, 70, seed=6)  # resampled twice: close, not equal
    np.testing.assert_array_equal(lite(other)["top_k_classes"][:, :1],
                                  KerasPredictor(v2_module)(other)["top_k_classes"][:, :1])


def test_fitted_detector_pictures_are_the_letterbox_in_uint8(make_images):
    from dataset.fixed_size_inputs import letterbox_uint8
    from dataset.numpy_preprocessing import letterbox_numpy, normalize_image_numpy

    picture = make_images(2, 90, 50, seed=3)
    fitted, scale = letterbox_uint8(picture, (64, 48), "imagenet_mean_std")
    expected, expected_scale = letterbox_numpy(picture, (64, 48))
    assert fitted.shape == (2, 64, 48, 3) and scale == expected_scale
    # Rounding to uint8 moves a pixel by at most half a level: 0.5 / std after normalizing.
    np.testing.assert_allclose(normalize_image_numpy(fitted, "imagenet_mean_std"), expected,
                               atol=0.5 / 57.0, rtol=0)
    assert (fitted[:, :, 36:] == np.array([124, 116, 104], np.uint8)).all()  # round(mean)
    assert (fitted[:, :, 35] != np.array([124, 116, 104], np.uint8)).any()


def _write_tfrecord(path, images):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=95)
            feature = {"image/encoded": tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[buffer.getvalue()]))}
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())


@pytest.mark.slow
def test_d0_int8_raw_network_from_tfrecords_stays_close_to_fp32(d0_module, make_images, tmp_path):
    _write_tfrecord(tmp_path / "calib-00000.tfrecord",
                    [make_images(1, 100 + 20 * i, 140, seed=30 + i)[0] for i in range(6)])
    samples = tflite.representative_images((128, 128), file_pattern=str(tmp_path / "calib-*"),
                                           num_samples=6)
    assert len(samples) == 6 and samples[0].shape == (1, 128, 128, 3)
    flatbuffer = tflite.convert_to_tflite(d0_module, "int8", samples, include_postprocess=False)
    ops = tflite.op_counts(flatbuffer)
    assert not _non_builtin(ops), ops
    fp32_size = sum(int(np.prod(v.shape)) * 4 for v in d0_module.network_variables)
    assert len(flatbuffer) < 0.45 * fp32_size  # int8 weights
    lite = TFLitePredictor(flatbuffer, postprocess_module=d0_module)
    assert lite.returns_raw and lite.fixed_batch_size is None
    images = make_images(1, 128, 128, seed=50)
    expected = KerasPredictor(d0_module).raw(d0_module.preprocess_batch(images)[0])
    actual = lite.raw(images)
    for key, value in expected.items():
        assert np.corrcoef(actual[key].ravel(), value.ravel())[0, 1] > 0.99, key
    detections = lite(images)  # --noinclude_postprocess: NMS applied in TensorFlow afterwards
    assert detections["detection_boxes"].shape == (1, 100, 4)
    assert detections["num_detections"][0] > 10


@pytest.mark.slow
def test_d0_fp32_static_batch_has_loop_free_nms_and_matches_keras(d0_module, make_images,
                                                                   same_detections):
    flatbuffer = tflite.convert_to_tflite(d0_module, "none", batch_size=2)
    ops = tflite.op_counts(flatbuffer)
    assert ops["NON_MAX_SUPPRESSION_V5"] == 2 and "WHILE" not in ops, ops  # one NMS per image
    lite = TFLitePredictor(flatbuffer)
    assert lite.fixed_batch_size == 2 and not lite.returns_raw
    images = make_images(3, 128, 128, seed=21)  # 3 = a full chunk of 2 + a padded one
    actual, expected = lite(images), KerasPredictor(d0_module)(images)
    assert actual["detection_boxes"].shape == (3, 100, 4)
    same_detections(actual, expected, box_atol=1e-2, score_atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["fp16", "int8"])
def test_d0_quantized_files_carry_their_nms(quantize, d0_module, make_images):
    samples = [make_images(1, 128, 128, seed=60 + i) for i in range(4)]
    flatbuffer = tflite.convert_to_tflite(d0_module, quantize, samples)
    ops = tflite.op_counts(flatbuffer)
    assert not _non_builtin(ops) and ops["NON_MAX_SUPPRESSION_V5"] >= 1, ops
    lite = TFLitePredictor(flatbuffer)  # tf.lite.Interpreter
    assert not lite.returns_raw
    if quantize == "int8":  # static batch 1, loop-free NMS (common.export.tflite)
        assert lite.fixed_batch_size == 1 and "WHILE" not in ops
        assert ops["CONV_2D"] and ops["DEQUANTIZE"]  # an int8 network, a float NMS
    images = make_images(2, 128, 128, seed=70)
    actual, expected = lite(images), KerasPredictor(d0_module)(images)
    assert actual["detection_boxes"].shape == (2, 100, 4)
    np.testing.assert_array_equal(actual["num_detections"], expected["num_detections"])
    # Random fixture weights give ~100 near-tied scores (conftest): small weight or
    # activation changes reorder them, so compare the best score and the top-20 mean.
    # Measured (fp16): sorted top-20 rows within 5e-4.
    atol = 5e-3 if quantize == "int8" else 1e-3
    top, ref = actual["detection_scores"][:, :20], expected["detection_scores"][:, :20]
    print(quantize, "top-1", top[:, 0], ref[:, 0], "top-20 mean", top.mean(1), ref.mean(1))
    np.testing.assert_allclose(top[:, 0], ref[:, 0], atol=atol)
    np.testing.assert_allclose(top.mean(1), ref.mean(1), atol=atol)


def test_combined_nms_is_refused_before_converting(d0_module, monkeypatch):
    monkeypatch.setitem(d0_module.nms, "mode", "combined")
    with pytest.raises(ExportError, match="no TFLite builtin op.*model.nms.method=gaussian"):
        tflite.convert_to_tflite(d0_module, "none")


def test_int8_needs_representative_data_and_patterns_must_match(tmp_path):
    with pytest.raises(ExportError, match="--quantize 'int4'"):
        tflite.convert_to_tflite(object(), "int4")
    with pytest.raises(FileNotFoundError, match="matches no TFRecord"):
        tflite.representative_images((64, 64), file_pattern=str(tmp_path / "none-*.tfrecord"))
    noise = tflite.representative_images((64, 48), num_samples=3)
    assert [s.shape for s in noise] == [(1, 64, 48, 3)] * 3 and noise[0].dtype == np.uint8


def test_tflite_predictor_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TFLitePredictor(str(tmp_path / "model.tflite"))
