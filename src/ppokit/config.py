"""What every ppokit config shares: building a typed dataclass from YAML and key=value overrides, with
errors that name the key. The configs themselves are ``ppokit.gym.config.PPOConfig`` and those of
``ppokit.lm.config``; the PPO update's fields are ``ppokit.core.settings.UpdateFields``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from ppokit.errors import ConfigError


class ConfigBase:
    """Shared by every config dataclass: build from a mapping, type-check each key, then validate()."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> ConfigBase:
        """Build a validated config; unknown keys and wrong types are a ConfigError naming the key."""
        config = cls()
        config.update(values, source=source)
        return config

    def update(self, values: dict[str, Any], source: str = "config") -> ConfigBase:
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of config keys to values, got {type(values).__name__}")
        hints = typing.get_type_hints(type(self))
        for key, value in values.items():
            if key not in hints:
                raise ConfigError(f"{source}: unknown config key {key!r}{_suggest(key, self.field_names())}")
            setattr(self, key, _coerce(key, value, hints[key], source))
        self.validate()
        return self

    def validate(self) -> None:
        """Range checks; each config overrides this."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The mapping a YAML file holds ({} when empty); ``what`` names the file in the errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {str(path)!r} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


RUN_CONFIG_FILE = "config.yaml"


def write_run_config(run_dir: Path, values: dict[str, Any], *, keep_existing: bool = False) -> Path:
    """A run directory's config.yaml (every key of the run, in order): the one writer of that file.
    ``keep_existing``: leave a config.yaml that is already there (the CLI wrote it before training began)."""
    path = Path(run_dir) / RUN_CONFIG_FILE
    if not (keep_existing and path.exists()):
        path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def update_run_config(run_dir: Path, **changes: Any) -> None:
    """Change some keys of a run directory's config.yaml (a run trained further gets its new total)."""
    path = Path(run_dir) / RUN_CONFIG_FILE
    if path.exists():
        write_run_config(run_dir, {**(yaml.safe_load(path.read_text()) or {}), **changes})


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML so numbers, booleans, lists and null work."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. learning_rate=3e-4)")
        try:
            overrides[key.strip()] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            overrides[key.strip()] = raw
    return overrides


def _suggest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; valid keys are: {', '.join(choices)}"


def check_range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):
        raise ConfigError(f"{name} must be in [{low}, {high}], got {value}")


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Convert a YAML value to the field's type, or raise a ConfigError naming key and expected type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:  # Optional[X] and X | None
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0], source)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key} must be one of {list(args)}, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)  # YAML reads "1e-3" (no dot) as a string
                except ValueError:
                    pass
            raise ConfigError(f"{source}: {key} must be a number, got {value!r}")
        return float(value)
    if hint is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return list(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping (e.g. {key}={{a: 1, b: 2}} on the command line), got {value!r}")
        return dict(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
        return value
    return value
