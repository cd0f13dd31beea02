"""Code named in a config ('package.module:Name'): a user's module factory or features extractor, imported on request."""

from __future__ import annotations

import importlib

from ppokit.errors import ConfigError


def import_spec(spec: str, key: str):
    """The object named by 'package.module:Name' (``key`` names the config key in errors)."""
    module_name, _, attribute = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{key} {spec!r}: cannot import {attribute!r} from {module_name!r} ({exc}); expected 'package.module:Name'") from None
    return target
