"""Every config key with its default and meaning, read from the config dataclasses themselves (the string under each field
is its documentation), so that `ppokit keys`, `--help` and the README's tables cannot drift from the code.

    ppokit keys train|sft|rm|ppo            # the keys of `ppokit train` / `ppokit lm sft|rm|ppo`
    python -m ppokit.config_keys README.md  # rewrite the README's tables between their <!-- keys:NAME --> markers
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import sys
import textwrap
from pathlib import Path


def config_classes() -> dict[str, type]:
    from ppokit.gym.config import PPOConfig
    from ppokit.lm.config import LMPPOConfig, RewardModelConfig, SFTConfig

    return {"train": PPOConfig, "sft": SFTConfig, "rm": RewardModelConfig, "ppo": LMPPOConfig}


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


def readme_block(text: str, name: str) -> str | None:
    """The table between a README's <!-- keys:NAME --> markers (None without them)."""
    match = re.search(rf"<!-- keys:{name} -->\n(.*?)\n?<!-- /keys:{name} -->", text, re.S)
    return match.group(1).strip() if match else None


def update_readme(path: Path) -> bool:
    """Rewrite each <!-- keys:NAME --> ... <!-- /keys:NAME --> block of ``path``; True when something changed."""
    text = path.read_text()
    updated = text
    for name, cls in config_classes().items():
        pattern = re.compile(rf"(<!-- keys:{name} -->\n)(?:.*?\n)?(<!-- /keys:{name} -->)", re.S)
        updated = pattern.sub(lambda match, cls=cls: match.group(1) + markdown_table(cls) + "\n" + match.group(2), updated)
    if updated != text:
        path.write_text(updated)
    return updated != text


if __name__ == "__main__":
    changed = update_readme(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
    print("README tables rewritten" if changed else "README tables already current")
