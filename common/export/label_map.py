"""Label maps (class id → name) for annotated images.

Accepted ``--label_map`` values:

* ``coco``: the 80 COCO 2017 categories under their original ids 1–90 (what
  the official EfficientDet checkpoints predict);
* a ``.yaml`` / ``.yml`` / ``.json`` file holding a mapping ``{id: name}`` or a
  list of names (numbered from ``first_id``);
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


def _from_mapping(mapping, path):
    try:
        return {int(k): str(v) for k, v in mapping.items()}
    except (TypeError, ValueError):
        raise LabelMapError(f"Label map {path!r}: keys must be integer class ids, "
                            f"e.g. {{1: person, 2: car}}.") from None


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
