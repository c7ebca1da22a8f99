"""Label maps (class id → name) for annotated images.

Accepted ``--label_map`` values:

* ``coco``: the 80 COCO 2017 categories under their original ids 1–90 (what
  the official EfficientDet checkpoints predict);
* a ``.yaml`` / ``.yml`` / ``.json`` file holding a mapping ``{id: name}``, the
  mapping ``{name: id}`` the project's converters write (``label_map.json``),
  or a list of names (numbered from ``first_id``);
* a ``.txt`` file with one class per line, either ``name`` (numbered from
  ``first_id``) or ``id name`` / ``id: name``.

``first_id`` is 1 for detectors (0 is never a class) and 0 for classifiers.
"""
from __future__ import annotations

import json
import os
import re

import yaml

_COCO_NAMES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant - "
    "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe - "
    "backpack umbrella - - handbag tie suitcase frisbee skis snowboard sports_ball kite "
    "baseball_bat baseball_glove skateboard surfboard tennis_racket bottle - wine_glass cup fork "
    "knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair "
    "couch potted_plant bed - dining_table - - toilet - tv laptop mouse remote keyboard "
    "cell_phone microwave oven toaster sink refrigerator - book clock vase scissors teddy_bear "
    "hair_drier toothbrush"
).split()
# Ids 1..90; "-" marks the ten ids COCO 2017 does not use.
COCO_LABEL_MAP = {i + 1: n.replace("_", " ") for i, n in enumerate(_COCO_NAMES) if n != "-"}


class LabelMapError(ValueError):
    """A label map file that cannot be read; the message names the file and the format."""


def _from_sequence(names, first_id):
    return {first_id + i: str(n) for i, n in enumerate(names)}


def _integer(value):
    """``value`` as an int when it is an integer or an integer string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _from_mapping(mapping, path):
    ids = [_integer(k) for k in mapping]
    if mapping and all(i is not None for i in ids):
        return {i: str(v) for i, v in zip(ids, mapping.values())}
    values = [_integer(v) for v in mapping.values()]
    if mapping and all(v is not None for v in values):  # {name: id}, as the converters write
        if len(set(values)) != len(values):
            raise LabelMapError(f"Label map {path!r}: two names share a class id.")
        return {v: str(k) for k, v in zip(mapping, values)}
    raise LabelMapError(f"Label map {path!r} must map integer class ids to names "
                        f"({{1: person, 2: car}}) or names to ids ({{person: 1, car: 2}}).")


def _from_text(text, first_id, path):
    lines = [line.strip() for line in text.splitlines() if line.strip() and not
             line.strip().startswith("#")]
    pairs = [re.match(r"^(\d+)\s*[:\s]\s*(.+)$", line) for line in lines]
    if lines and all(pairs):
        return {int(m.group(1)): m.group(2).strip() for m in pairs}
    if any(pairs) and not all(pairs):
        raise LabelMapError(f"Label map {path!r} mixes 'id name' lines with bare names; "
                            "use one style for every line.")
    return _from_sequence(lines, first_id)


def load_label_map(spec, first_id=1):
    """Loads a label map (see the module docstring).

    Args:
        spec: None, ``"coco"`` or a file path.
        first_id: id of the first name in list / plain-text forms.

    Returns:
        ``{class_id: name}`` (empty for None).

    Raises:
        FileNotFoundError: the file does not exist.
        LabelMapError: an unreadable or malformed file.
    """
    if not spec:
        return {}
    if spec == "coco":
        return dict(COCO_LABEL_MAP)
    if not os.path.isfile(spec):
        raise FileNotFoundError(f"Label map {spec!r} does not exist (give 'coco' or a "
                                ".yaml / .json / .txt file).")
    with open(spec, encoding="utf-8") as handle:
        text = handle.read()
    extension = os.path.splitext(spec)[1].lower()
    if extension == ".txt":
        return _from_text(text, first_id, spec)
    try:
        data = json.loads(text) if extension == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise LabelMapError(f"Label map {spec!r} is not valid {extension[1:] or 'YAML'}: "
                            f"{str(error).splitlines()[0]}") from None
    if isinstance(data, dict):
        return _from_mapping(data, spec)
    if isinstance(data, list):
        return _from_sequence(data, first_id)
    raise LabelMapError(f"Label map {spec!r} must hold a mapping {{id: name}} or a list of names.")


def label_name(label_map, class_id):
    """The name of ``class_id``, or the id itself when the map does not know it."""
    return label_map.get(int(class_id), str(int(class_id)))


# A model directory's class names, written by training (``{id: name}`` JSON).
MODEL_DIR_LABEL_MAP = "label_map.json"
_NEARBY_NAMES = ("label_map.json", "label_map.yaml", "label_map.txt")


def nearby_label_map(pattern):
    """A label-map file in the folder of ``pattern`` (a file glob) or the one above."""
    folder = os.path.dirname(os.path.abspath(pattern))
    for directory in (folder, os.path.dirname(folder)):
        for name in _NEARBY_NAMES:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                return path
    return None


def _coco_categories(path):
    with open(path, encoding="utf-8") as handle:
        categories = json.load(handle).get("categories") or []
    return {int(c["id"]): str(c["name"]) for c in categories if "id" in c and "name" in c}


def model_dir_label_map(path):
    """The class names a model directory carries (``{}`` when none).

    Args:
        path: a model directory, or a checkpoint prefix inside one (also in its
            ``best/`` sub-folder).
    """
    from common.model_dir import model_dir_of

    directory = model_dir_of(path)
    file = os.path.join(directory, MODEL_DIR_LABEL_MAP) if directory else None
    return load_label_map(file) if file and os.path.isfile(file) else {}


def run_label_map(config, first_id=1):
    """The class names of a run, and where they came from.

    In order: ``data.label_map``; the model directory's ``label_map.json``; a
    ``label_map.json`` / ``.yaml`` / ``.txt`` next to the training or
    validation records (or one folder up, as the converters and the sample
    dataset lay them out); the categories of ``data.val_json_file``.

    Returns:
        ``({class_id: name}, source path)``, or ``({}, None)`` when none is found.

    Raises:
        FileNotFoundError, LabelMapError: ``data.label_map`` names a missing or
            malformed file.
    """
    data = config.data
    if data.label_map:
        return load_label_map(data.label_map, first_id), data.label_map
    found = model_dir_label_map(config.runtime.model_dir)
    if found:
        return found, os.path.join(config.runtime.model_dir, MODEL_DIR_LABEL_MAP)
    for pattern in (data.train_file_pattern, data.val_file_pattern):
        path = nearby_label_map(pattern) if pattern else None
        if path:
            try:
                return load_label_map(path, first_id), path
            except LabelMapError:
                continue  # a file we only guessed at: not the user's mistake
    if data.val_json_file and os.path.isfile(data.val_json_file):
        try:
            names = _coco_categories(data.val_json_file)
        except (OSError, ValueError, TypeError, AttributeError):
            names = {}
        if names:
            return names, data.val_json_file
    return {}, None


def label_map_json(label_map):
    """``{id: name}`` as the JSON text a model directory keeps."""
    return json.dumps({str(k): v for k, v in sorted(label_map.items())}, indent=2) + "\n"
