"""Tuned hyperparameters shipped with ppokit, one YAML file per preset in presets/.

A preset file is a mapping of PPOConfig keys plus ``env_id`` (the env it was tuned for) and an
optional ``notes`` string. The preset named like an env id is that env's default.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from ppokit.config import _suggest
from ppokit.errors import ConfigError

_META_KEYS = ("env_id", "notes")


def _files():
    return {p.name[: -len(".yaml")]: p for p in resources.files("ppokit.gym").joinpath("presets").iterdir() if p.name.endswith(".yaml")}


def list_presets() -> dict[str, dict[str, Any]]:
    """Preset name -> its full contents (including env_id and notes)."""
    return {name: yaml.safe_load(path.read_text()) for name, path in sorted(_files().items())}


def preset_for_env(env_id: str) -> str | None:
    """The preset an env id gets by default: the one named like it ('/' written '-'), else 'Atari' for ALE ids."""
    name = env_id.replace("/", "-")
    if name in _files():
        return name
    return "Atari" if env_id.startswith("ALE/") else None


def load_preset(name: str) -> tuple[str | None, dict[str, Any]]:
    """(env_id the preset was tuned for, its hyperparameters)."""
    files = _files()
    if name not in files:
        raise ConfigError(f"unknown preset {name!r}{_suggest(name, sorted(files))}")
    data = yaml.safe_load(files[name].read_text()) or {}
    return data.get("env_id"), {k: v for k, v in data.items() if k not in _META_KEYS}
