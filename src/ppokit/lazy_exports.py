"""Lazy package attributes (PEP 562): a name's module is imported on first use, so importing a
package does not pull in torch, transformers or gymnasium before a name that needs them is asked for."""

from __future__ import annotations

import importlib


def lazy_getattr(package: str, exports: dict[str, str], namespace: dict):
    """A module ``__getattr__`` that imports ``package.<exports[name]>`` on first access of ``name``
    and caches the value in ``namespace`` (the package's globals), so later lookups skip this."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value
        return value

    return __getattr__
