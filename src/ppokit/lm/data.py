"""Rows for the three trainers, from JSONL files, lists of dicts or ``datasets`` objects.

Plain rows hold strings: SFT ``prompt`` and ``completion``; preference ``prompt``, ``chosen`` and
``rejected``; PPO ``prompt``. Chat rows hold message lists ``[{"role", "content"}, ...]`` instead:
SFT ``messages`` (the loss is taken on the assistant turns); preference ``chosen`` and ``rejected``,
each a whole conversation ending with an assistant turn (optionally after shared ``prompt``
messages); PPO ``messages`` (rendered with ``add_generation_prompt=True``). A bad row is a
ConfigError naming the file, the line (or row) number and the field.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ppokit.errors import ConfigError

FIELDS = {
    "sft": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
    "prompt": ("prompt",),
}
CHAT_FORMS = {
    "sft": "{'messages': [...]}",
    "preference": "{'chosen': [...], 'rejected': [...]} (and optionally 'prompt': [...])",
    "prompt": "{'messages': [...]}",
}

LocatedRow = tuple[str, dict]  # (where it came from: "file.jsonl:3" or "row 3", the checked row)


def load_rows(source: str | Path | Iterable[dict[str, Any]], kind: str) -> list[dict]:
    """Read and check rows of ``kind`` ('sft', 'preference' or 'prompt') from a JSONL path or an iterable."""
    return [row for _, row in load_located_rows(source, kind)]


def load_located_rows(source: str | Path | Iterable[dict[str, Any]], kind: str) -> list[LocatedRow]:
    """Like load_rows, each row with the place it came from, for errors found later (e.g. by the tokenizer)."""
    if kind not in FIELDS:
        raise ValueError(f"kind must be one of {list(FIELDS)}, got {kind!r}")
    if isinstance(source, (str, Path)):
        return _read_jsonl(Path(source), kind)
    rows = [(f"row {number}", _check_row(row, kind, f"row {number}")) for number, row in enumerate(source, start=1)]
    if not rows:
        raise ConfigError(f"the {kind} dataset is empty; expected rows with fields {list(FIELDS[kind])} or {CHAT_FORMS[kind]}")
    return rows


def prompt_of(row: dict) -> str | list:
    """A PPO row's prompt: its text, or its message list."""
    return row["messages"] if "messages" in row else row["prompt"]


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def split_rows(rows: list, eval_fraction: float, seed: int) -> tuple[list, list]:
    """A seeded held-out split; at least one row on each side when there are two or more."""
    if not rows:
        return [], []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = min(max(int(round(len(rows) * eval_fraction)), 1 if eval_fraction > 0 else 0), len(rows) - 1)
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in order[:n_eval]]


def train_and_eval_rows(config, kind: str, train_rows: list[dict] | None, eval_rows: list[dict] | None) -> tuple[list[LocatedRow], list[LocatedRow]]:
    """Rows given in Python win; else config.data, with config.eval_data or a seeded eval_fraction split."""
    if train_rows is not None:
        return load_located_rows(train_rows, kind), load_located_rows(eval_rows, kind) if eval_rows else []
    train = load_located_rows(config.data, kind)
    if eval_rows is not None:
        return train, load_located_rows(eval_rows, kind)
    if config.eval_data is not None:
        return train, load_located_rows(config.eval_data, kind)
    return split_rows(train, config.eval_fraction, config.seed)


def _read_jsonl(path: Path, kind: str) -> list[LocatedRow]:
    if not path.is_file():
        raise ConfigError(f"data file {str(path)!r} does not exist")
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: not valid JSON ({exc.msg}); expected one object per line") from None
            rows.append((where, _check_row(row, kind, where)))
    if not rows:
        raise ConfigError(f"{path}: no rows; expected JSON objects with fields {list(FIELDS[kind])} or {CHAT_FORMS[kind]}, one per line")
    return rows


def _check_row(row: Any, kind: str, where: str) -> dict:
    fields = FIELDS[kind]
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: expected an object with fields {list(fields)} or {CHAT_FORMS[kind]}, got {type(row).__name__}")
    if kind in ("sft", "prompt") and "messages" in row:
        messages = _check_messages(row["messages"], where, "messages")
        if kind == "sft" and not any(m["role"] == "assistant" for m in messages):
            raise ConfigError(f"{where}: field 'messages' has no assistant turn; SFT trains on the assistant's turns")
        return {"messages": messages}
    if kind == "preference" and isinstance(row.get("chosen"), list):
        checked = {"prompt": _check_messages(row["prompt"], where, "prompt", allow_empty=True) if "prompt" in row else []}
        for name in ("chosen", "rejected"):
            if name not in row:
                raise ConfigError(f"{where}: missing field {name!r}; expected {CHAT_FORMS[kind]}")
            checked[name] = _check_messages(row[name], where, name)
            if checked[name][-1]["role"] != "assistant":
                raise ConfigError(f"{where}: field {name!r} must end with an assistant message (the response that is ranked), "
                                  f"got role {checked[name][-1]['role']!r}")
        return checked
    for name in fields:
        if name not in row:
            raise ConfigError(f"{where}: missing field {name!r}; expected fields {list(fields)} or {CHAT_FORMS[kind]} (found {sorted(row)})")
        if not isinstance(row[name], str):
            raise ConfigError(f"{where}: field {name!r} must be a string, got {type(row[name]).__name__}")
    return {name: row[name] for name in fields}


def _check_messages(messages: Any, where: str, field: str, allow_empty: bool = False) -> list[dict[str, str]]:
    if not isinstance(messages, list) or (not messages and not allow_empty):
        raise ConfigError(f"{where}: field {field!r} must be a non-empty list of {{'role', 'content'}} messages, got {messages!r}")
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise ConfigError(f"{where}: field {field!r}, message {index}: expected {{'role': str, 'content': str}}, got {message!r}")
        checked.append({"role": message["role"], "content": message["content"]})
    return checked
