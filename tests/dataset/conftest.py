"""Shared fixtures of the data tests: one small sample dataset per session and
helpers that write tiny hand-made datasets."""
import io
import json
import os
import types

import pytest
from PIL import Image

from dataset.make_sample_dataset import make_sample_datasets

SMALL = dict(num_train=12, num_val=8, image_size=128, seed=3, num_shards=2,
             classification_num_train=16, classification_num_val=8, classification_image_size=48)


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """Paths of a small sample dataset (128×128 detection, 48×48 classification)."""
    return make_sample_datasets(str(tmp_path_factory.mktemp("sample")), **SMALL)


def image_bytes(array, fmt="JPEG", mode=None):
    """Encodes a uint8 array as an image file (optionally converted to ``mode``)."""
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def write_coco(root, images, annotations, num_categories=3):
    """Writes a COCO JSON + images; ``images`` is ``[(id, file_name, array or bytes)]``.

    Returns:
        ``(json_path, image_dir)``.
    """
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir, exist_ok=True)
    entries = []
    for image_id, file_name, content in images:
        data = content if isinstance(content, bytes) else image_bytes(content)
        with open(os.path.join(image_dir, file_name), "wb") as handle:
            handle.write(data)
        entry = {"id": image_id, "file_name": file_name}
        if not isinstance(content, bytes):
            entry.update(height=content.shape[0], width=content.shape[1])
        entries.append(entry)
    anns = [dict({"id": i + 1, "iscrowd": 0}, **a) for i, a in enumerate(annotations)]
    data = {"images": entries, "annotations": anns,
            "categories": [{"id": i + 1, "name": f"c{i + 1}"} for i in range(num_categories)]}
    path = os.path.join(root, "instances_test.json")
    with open(path, "w") as handle:
        json.dump(data, handle)
    return path, image_dir


@pytest.fixture(scope="session")
def helpers():
    """The helper functions above (test modules cannot import conftest in importlib mode)."""
    return types.SimpleNamespace(image_bytes=image_bytes, write_coco=write_coco)
