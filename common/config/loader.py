"""Generic dict ↔ frozen-dataclass conversion with typed, validated values.

Values are converted to the declared field types (``int``, ``float``, ``bool``,
``str``, ``X | None``, ``tuple[T, ...]``, fixed tuples, nested dataclasses).
Unknown keys raise :class:`ConfigError` naming the key and the closest valid
keys. Dataclasses may define ``validate(self)`` which runs after construction.
"""
import dataclasses
import difflib
import types
import typing

from common.config.errors import ConfigError


def _suggest(key, valid):
    close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "valid keys: " + ", ".join(sorted(valid))


def _convert(value, annotation, path):
    """Converts ``value`` to ``annotation``; raises ConfigError naming ``path``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{path}: a value is required, got null.")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} fits none of {args}.")
    if dataclasses.is_dataclass(annotation):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping of keys, got {value!r}.")
        return from_dict(annotation, value, path)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("x", ",").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            # A scalar for a fixed pair of one type means a square size: 512 → (512, 512).
            value = [value] * len(args) if len(set(args)) == 1 and Ellipsis not in args else [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values, got {list(value)!r}.")
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{path}: expected true or false, got {value!r}.")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected an integer, got {value!r}.")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected an integer, got {value!r}.")
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}.")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: expected a number, got {value!r}.") from None
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: expected a string, got {value!r}.")
        return str(value)
    raise ConfigError(f"{path}: unsupported field type {annotation!r}.")


def from_dict(cls, data, path=""):
    """Builds dataclass ``cls`` from a (possibly partial) nested dict.

    Raises:
        ConfigError: on an unknown key (with suggestions) or a bad value.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in names:
            where = f"{path}.{key}" if path else key
            raise ConfigError(f"Unknown config key {where!r}: {_suggest(key, names)}")
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        kwargs[key] = _convert(value, hints[key], where)
    try:
        obj = cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{path or cls.__name__}: {error}") from None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def to_dict(obj):
    """Nested plain dict (tuples → lists) of a dataclass, ready for YAML."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def deep_merge(base, update):
    """Returns ``base`` with ``update`` merged in (nested dicts merge, others replace)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _split_top_level(text):
    """Splits ``a=1,b=[1,2],c=3`` on commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, None, []
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[({":
            depth += 1
        elif char in "])}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if current:
        parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_overrides(hparams=None, overrides=()):
    """Parses ``--hparams`` (comma-separated) and ``--override`` items.

    Args:
        hparams: ``"a.b=1,c=[1,2],image_size=640x384"`` or None.
        overrides: iterable of ``"a.b=1"`` strings.

    Returns:
        A list of ``(dotted_key, value)`` in order; values parsed as YAML
        scalars / lists (``640x384`` stays a string for the field converter).

    Raises:
        ConfigError: for an item without ``=``.
    """
    import yaml  # here, not at the top: the networks build without PyYAML (keras + jax only)

    items = _split_top_level(hparams) if hparams else []
    items += [o for o in overrides if o]
    parsed = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} must look like key=value (e.g. model.num_classes=20).")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parsed.append((key.strip(), value))
    return parsed
