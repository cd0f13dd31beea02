"""Tuned hyperparameters shipped with ppokit, one YAML file per preset in presets/.

A preset file is a mapping of PPOConfig keys plus ``env_id`` (the env it was tuned for) and an
optional ``notes`` string. The preset named like an env id is that env's default; a run's config is
PPOConfig's defaults < the preset < the keys the user gives (``resolve_config``).
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import yaml

from ppokit.config import _suggest
from ppokit.errors import ConfigError
from ppokit.gym.config import PPOConfig

_META_KEYS = ("env_id", "notes")
# the preset named like the env id, if there is one
AUTO_PRESET = "auto"


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


def resolve_preset_name(env, preset: str | None) -> str | None:
    """'auto': the preset named like the env id, if there is one; None: no preset; else that preset."""
    if preset == AUTO_PRESET:
        return preset_for_env(env) if isinstance(env, str) else None
    return preset


def resolve_config(env, config: PPOConfig | dict | None, preset: str | None = AUTO_PRESET) -> PPOConfig:
    """A PPOConfig as given; otherwise defaults < preset < the dict's keys, as `ppokit train` merges them."""
    if isinstance(config, PPOConfig):
        if preset not in (AUTO_PRESET, None):
            raise ConfigError(f"preset={preset!r} applies to a dict of overrides; a PPOConfig is used as given "
                              f"(pass a dict, or build the PPOConfig from load_preset({preset!r}))")
        resolved = copy.deepcopy(config)
        resolved.validate()
        return resolved
    if config is not None and not isinstance(config, dict):
        raise ConfigError(f"config must be a PPOConfig, a dict or None, got {type(config).__name__}")
    name = resolve_preset_name(env, preset)
    values = load_preset(name)[1] if name is not None else {}
    return PPOConfig.from_dict(values | (config or {}), source="config" if config else f"preset {name!r}")
