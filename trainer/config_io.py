"""Loading configs: dataclass defaults < YAML recipe < ``--set key.path=value`` overrides.

Unknown keys raise ``ValueError`` naming the key and listing the allowed ones; values are
checked against the field's type (``--set`` values are parsed as YAML first). See
:mod:`trainer.config` for the config classes.

Example::

    from trainer.config import GRPOStageConfig
    from trainer.config_io import load_config

    cfg = load_config(GRPOStageConfig, "trainer/recipes/stage1.yaml",
                      ["output_dir=runs/s1", "model.path=runs/sft", "learning_rate=2e-6"], stage="stage1")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from trainer.config import GRPO_STAGE_DEFAULTS, GRPOStageConfig, PipelineConfig


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the annotation ``tp``; a ``ValueError`` naming ``key`` otherwise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{key}: expected a mapping of {tp.__name__} options, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if origin in (list, Sequence) or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # PyYAML reads 1e-5 (no dot) as a string; it is a number to anyone writing a recipe
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported annotation {tp!r}")  # a bug in a config class


def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def from_dict(cls: type, data: Mapping[str, Any], *, prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from a (nested) mapping; unknown keys and wrong types raise
    ``ValueError`` naming the key."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    fields = _fields(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            where = f" in {prefix.rstrip('.')}" if prefix else ""
            raise ValueError(
                f"unknown config key {prefix + str(key)!r}{where}; allowed: {', '.join(sorted(fields))}"
            )
        _, tp = fields[key]
        kwargs[key] = _coerce(value, tp, prefix + key)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        if prefix and not str(exc).startswith(prefix.split(".")[0]):
            raise ValueError(f"{prefix.rstrip('.')}: {exc}") from exc
        raise


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain nested dicts (JSON/YAML-ready)."""
    return dataclasses.asdict(config)


def config_hash(config: Any, *, ignore: Sequence[str] = ("output_dir",)) -> str:
    """A stable digest of a config, ignoring top-level ``ignore`` keys (a stage's identity)."""
    data = {k: v for k, v in to_dict(config).items() if k not in ignore}
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=12).hexdigest()


def _parse_set(item: str) -> tuple[list[str], Any]:
    import yaml

    if "=" not in item:
        raise ValueError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"--set expects a dotted key such as model.path, got {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ValueError(f"--set {key}: cannot parse {raw!r}: {exc}") from exc
    return key.split("."), value


def _dict_keys(cls: type, path: Sequence[str]) -> bool:
    """Whether ``path`` ends inside a free-form dict field (e.g. ``trl.x``, ``reward_overrides.y``)."""
    current: Any = cls
    for part in path:
        if not _is_dataclass_type(current):
            return True
        fields = _fields(current)
        if part not in fields:
            return False
        tp = fields[part][1]
        origin = typing.get_origin(tp)
        if origin in (dict, Mapping) or tp is dict:
            return True
        current = tp
    return False


def apply_sets(cls: type, data: dict[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to the nested mapping ``data`` (a new dict)."""
    out = json.loads(json.dumps(data, default=str)) if data else {}
    for item in sets:
        keys, value = _parse_set(item)
        node = out
        current: Any = cls
        for i, part in enumerate(keys[:-1]):
            if not _dict_keys(cls, keys[: i + 1]):
                fields = _fields(current) if _is_dataclass_type(current) else {}
                if part not in fields:
                    raise ValueError(
                        f"unknown config key {'.'.join(keys[: i + 1])!r} in --set {item!r}; "
                        f"allowed: {', '.join(sorted(fields))}"
                    )
                current = fields[part][1]
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ValueError(f"--set {item!r}: {'.'.join(keys[: i + 1])} is not a section")
            node = child
        node[keys[-1]] = value
    return out


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A recipe file as a mapping (an empty file is an empty recipe)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of options, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` merged in, nested mappings key by key (``top`` wins)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    cls: type,
    config_path: str | os.PathLike[str] | None = None,
    sets: Sequence[str] = (),
    *,
    stage: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> Any:
    """Defaults (per ``stage`` for GRPO) < YAML at ``config_path`` < ``overrides`` < ``sets``.

    Errors name the file or the ``--set`` item and the key. ``PipelineConfig`` recipes get
    the per-stage GRPO defaults under their ``stage1`` / ``stage2`` sections. ``source`` names
    where ``overrides`` came from, in error messages.
    """
    data: dict[str, Any] = {}
    if stage in GRPO_STAGE_DEFAULTS and cls is GRPOStageConfig:
        data = dict(GRPO_STAGE_DEFAULTS[stage])
    elif cls is PipelineConfig:
        data = {name: dict(defaults) for name, defaults in GRPO_STAGE_DEFAULTS.items()}
    if config_path is not None:
        try:
            data = deep_merge(data, read_yaml(config_path))
        except ValueError as exc:
            if str(exc).startswith(str(config_path)):
                raise
            raise ValueError(f"{config_path}: {exc}") from exc
    if overrides:
        data = deep_merge(data, overrides)
    data = apply_sets(cls, data, sets)
    label = source or (str(config_path) if config_path is not None else None)
    where = f"{label}: " if label else ""
    try:
        return from_dict(cls, data)
    except ValueError as exc:
        raise ValueError(f"{where}{exc}") from exc


def help_table(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(key, type, default, help)`` for every option of ``cls``, nested sections flattened."""
    rows = []
    defaults = cls()
    for name, (f, tp) in _fields(cls).items():
        if _is_dataclass_type(tp):
            rows.extend(help_table(tp, prefix + name + "."))
            continue
        default = getattr(defaults, name)
        rows.append((prefix + name, _type_name(tp), repr(default), f.metadata.get("help", "")))
    return rows
