"""The Python API (efficientdet.Detector, efficientnet_v2.Classifier): the same
detections as model_inspect.py --runmode infer, the README snippet runs, and the
classifier predicts, draws and exports."""
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]


def _val_images(trained_detector, count=4):
    return sorted(pathlib.Path(trained_detector["sample"]["val_image_dir"]).glob("*"))[:count]


def test_detector_predicts_what_model_inspect_infer_writes(tmp_path, trained_detector):
    from efficientdet import Detector

    images = _val_images(trained_detector)
    out_json = tmp_path / "detections.json"
    result = subprocess.run(
        [sys.executable, "model_inspect.py", "--runmode", "infer",
         "--ckpt_path", trained_detector["model_dir"], "--input_image",
         str(images[0].parent / "*"), "--output_image_dir", str(tmp_path / "out"),
         "--output_json", str(out_json)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    by_file = {pathlib.Path(r["input"]).name: r["detections"]
               for r in json.loads(out_json.read_text())}

    detector = Detector.from_checkpoint(trained_detector["model_dir"])
    assert detector.label_map == {1: "circle", 2: "square", 3: "triangle"}
    # Paths and an array give the same thing.
    array = np.asarray(Image.open(images[1]).convert("RGB"))
    predictions = detector.predict([images[0], array, *images[2:]])
    for path, prediction in zip(images, predictions):
        expected = by_file[path.name]
        assert len(prediction["scores"]) == len(expected) > 0
        np.testing.assert_allclose(prediction["scores"], [d["score"] for d in expected],
                                   atol=1e-5, rtol=0)
        np.testing.assert_allclose(prediction["boxes"], [d["box_yxyx"] for d in expected],
                                   atol=0.01, rtol=0)  # the JSON rounds to 0.01 px
        assert prediction["classes"].tolist() == [d["class_id"] for d in expected]
        assert prediction["names"] == [d["class_name"] for d in expected]
    kept = detector.predict(images[0], min_score=0.05)[0]
    assert (kept["scores"] >= 0.05).all() and len(kept["scores"]) <= len(predictions[0]["scores"])
    picture = detector.draw(images[0], predictions[0])
    assert picture.size == Image.open(images[0]).size


def test_readme_snippet_runs(trained_detector):
    readme = (REPO / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert "from efficientdet import Detector" in snippet
    sample = pathlib.Path(trained_detector["sample"]["val_image_dir"]).parent.parent
    snippet = snippet.replace("runs/demo", trained_detector["model_dir"]).replace(
        "runs/sample_data", str(sample))
    namespace = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    detections = namespace["detections"]
    assert len(detections) == 1 and set(detections[0]) == {"boxes", "scores", "classes", "names"}


def test_classifier_predicts_draws_and_exports(tmp_path):
    from efficientnet_v2 import Classifier

    classifier = Classifier.from_checkpoint(model_name="efficientnetv2-b0",
                                            hparams="num_classes=4,image_size=32",
                                            label_map={0: "a", 1: "b", 2: "c", 3: "d"})
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8),
              rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)]
    results = classifier.predict(images, top_k=3)
    assert len(results) == 2
    for result in results:
        assert result["classes"].shape == (3,) and len(set(result["classes"].tolist())) == 3
        assert np.all(np.diff(result["probabilities"]) <= 0)  # most probable first
        assert result["names"] == ["abcd"[c] for c in result["classes"]]
    assert classifier.draw(images[0], results[0]).size == (50, 40)
    path = classifier.export(str(tmp_path / "tiny.tflite"), format="tflite")
    assert pathlib.Path(path).stat().st_size > 100_000
    with pytest.raises(ValueError, match="must be uint8"):
        classifier.predict(images[0].astype(np.float32))
    # Gray and RGBA arrays are converted as image files of those kinds are read.
    gray = images[1][..., 0]
    rgb_of_gray = np.repeat(gray[..., None], 3, axis=-1)
    expected = classifier.predict(rgb_of_gray)[0]["probabilities"]
    for variant in (gray, gray[..., None]):
        np.testing.assert_allclose(classifier.predict(variant)[0]["probabilities"], expected,
                                   rtol=1e-6)
    rgba = np.concatenate([images[1], np.zeros_like(images[1][..., :1])], axis=-1)
    np.testing.assert_allclose(classifier.predict(rgba)[0]["probabilities"],
                               classifier.predict(images[1])[0]["probabilities"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"got \(30, 30, 2\)"):
        classifier.predict(images[1][..., :2])
    from efficientdet import Detector

    with pytest.raises(ValueError, match="belongs to the efficientnet family"):
        Detector.from_checkpoint(model_name="efficientnetv2-b0")
