"""A config dataclass's keys with their defaults and meanings, read from the class itself (the string under each field
is its documentation): a terminal listing (`ppokit keys`, `--help`) and a README table (``ppokit.config_keys``)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap


def field_docs(cls: type) -> dict[str, str]:
    """The string written under each field, from the class and its bases (a subclass's wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for statement, following in zip(body, body[1:]):
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) and isinstance(following, ast.Expr) \
                    and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str):
                docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def default_of(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else None


def format_value(value) -> str:
    """As it is written in YAML or key=value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, float) and (abs(value) < 1e-3 or abs(value) >= 1e5) and value != 0:
        return f"{value:g}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def key_rows(cls: type) -> list[tuple[str, str, str]]:
    """(key, default, meaning) of every field, in the dataclass's order."""
    docs = field_docs(cls)
    return [(field.name, format_value(default_of(field)), docs.get(field.name, "")) for field in dataclasses.fields(cls)]


def markdown_table(cls: type) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | `{default}` | {meaning.replace('|', '/')} |" for name, default, meaning in key_rows(cls)]
    return "\n".join(lines)


def plain_listing(cls: type, width: int = 100) -> str:
    """For a terminal: each key with its default, then its meaning wrapped and indented."""
    lines = []
    for name, default, meaning in key_rows(cls):
        lines.append(f"  {name} = {default}")
        lines += textwrap.wrap(meaning, width=width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)
