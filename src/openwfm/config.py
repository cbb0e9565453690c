"""Dataclass configs: named presets, YAML files and ``key=value`` overrides (OmegaConf).

A config is a plain dataclass whose fields carry the paper's names. ``make_config`` builds one from a
preset, then merges YAML files, then command-line overrides, in that order. Keys are checked against
the dataclass before merging, so a typo fails with the closest valid name::

    cfg = make_config(SimConfig, preset="tiny", overrides=["num_frames=17", "falling.max_objects=2"])
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from openwfm.errors import OpenWFMError

T = TypeVar("T")

_PRESETS: dict[type, dict[str, Callable[[], Any]]] = {}


class ConfigError(OpenWFMError):
    """A config file, preset name or override that cannot be used."""


def register_preset(cls: type, name: str) -> Callable[[Callable[[], T]], Callable[[], T]]:
    """Decorator: register a zero-argument factory as preset ``name`` of config class ``cls``."""

    def wrap(factory: Callable[[], T]) -> Callable[[], T]:
        _PRESETS.setdefault(cls, {})[name] = factory
        return factory

    return wrap


def preset_names(cls: type) -> list[str]:
    return sorted(_PRESETS.get(cls, {}))


def get_preset(cls: type[T], name: str) -> T:
    table = _PRESETS.get(cls, {})
    if name not in table:
        raise ConfigError(f"unknown {cls.__name__} preset '{name}'{_suggest(name, table)}; "
                          f"presets: {', '.join(sorted(table)) or '(none)'}")
    return table[name]()


def _suggest(key: str, valid: Iterable[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def _nested_dataclass(cls: type, name: str) -> type | None:
    hint = get_type_hints(cls).get(name)
    return hint if dataclasses.is_dataclass(hint) else None


def check_keys(cls: type, data: Any, source: str, prefix: str = "") -> None:
    """Raise ConfigError for the first key in ``data`` that ``cls`` (a dataclass) does not have."""
    if not isinstance(data, (dict, DictConfig)):
        return
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'{_suggest(str(key), fields, prefix)}; "
                              f"valid keys here: {', '.join(sorted(fields))}")
        sub = _nested_dataclass(cls, key)
        if sub is not None:
            check_keys(sub, data[key], source, f"{prefix}{key}.")


def load_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = OmegaConf.load(path)
    except Exception as e:  # yaml.YAMLError and OmegaConf errors alike
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, DictConfig):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def make_config(cls: type[T], preset: str | None = None, yaml_files: Iterable[str | Path] = (),
                overrides: Iterable[str] = (), base: T | None = None) -> T:
    """Preset (or ``base``, or the class defaults) <- each YAML file <- each ``a.b=value`` override."""
    if base is None:
        base = get_preset(cls, preset) if preset else cls()
    merged = OmegaConf.structured(base)
    layers: list[tuple[str, DictConfig]] = [(str(p), load_yaml(p)) for p in yaml_files]
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value, e.g. num_frames=17")
        try:
            layers.append((f"override '{item}'", OmegaConf.from_dotlist([item])))
        except OmegaConfBaseException as e:
            raise ConfigError(f"override '{item}': {e}") from e
    for source, layer in layers:
        check_keys(cls, layer, source)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{source}: {_first_line(e)}") from e
    obj = OmegaConf.to_object(merged)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj  # type: ignore[return-value]


def from_dict(cls: type[T], data: dict, source: str = "config", ignore: Iterable[str] = ()) -> T:
    """A config from plain data, e.g. a checkpoint's config.json (keys in ``ignore`` are skipped; any other
    unknown key is an error naming ``source``)."""
    data = {k: v for k, v in data.items() if k not in set(ignore)}
    layer = OmegaConf.create(data)
    check_keys(cls, layer, source)
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls()), layer))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{source}: {_first_line(e)}") from e
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj  # type: ignore[return-value]


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0]


def to_dict(cfg: Any) -> dict:
    """A config as plain JSON/YAML-ready data."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def flat(obj) -> dict[str, object]:
    """A config (dataclass or dict) as ``{"a.b.c": value}`` (lists stay values)."""
    data = OmegaConf.to_container(OmegaConf.structured(obj) if not isinstance(obj, dict) else OmegaConf.create(obj),
                                  resolve=True)
    out: dict[str, object] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(data, "")
    return out


def config_changes(old, new) -> dict[str, tuple[object, object]]:
    """``{key: (old value, new value)}`` for every leaf that differs between two configs."""
    a, b = flat(old), flat(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
