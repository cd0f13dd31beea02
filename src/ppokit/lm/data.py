"""Rows for the three trainers, from JSONL files, lists of dicts or ``datasets`` objects.

SFT rows hold ``prompt`` and ``completion``; preference rows ``prompt``, ``chosen`` and
``rejected``; PPO rows ``prompt``. Every field must be a string. A bad row is a ConfigError naming
the file, the line (or row) number and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from ppokit.errors import ConfigError

FIELDS = {
    "sft": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
    "prompt": ("prompt",),
}


def load_rows(source: str | Path | Iterable[dict[str, Any]], kind: str) -> list[dict[str, str]]:
    """Read and check rows of ``kind`` ('sft', 'preference' or 'prompt') from a JSONL path or an iterable."""
    if kind not in FIELDS:
        raise ValueError(f"kind must be one of {list(FIELDS)}, got {kind!r}")
    if isinstance(source, (str, Path)):
        return _read_jsonl(Path(source), FIELDS[kind])
    rows = []
    for number, row in enumerate(source, start=1):
        rows.append(_check_row(row, FIELDS[kind], f"row {number}"))
    if not rows:
        raise ConfigError(f"the {kind} dataset is empty; expected rows with fields {list(FIELDS[kind])}")
    return rows


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def split_rows(rows: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded held-out split; at least one row on each side when there are two or more."""
    import random

    if not rows:
        return [], []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = min(max(int(round(len(rows) * eval_fraction)), 1 if eval_fraction > 0 else 0), len(rows) - 1)
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in order[:n_eval]]


def train_and_eval_rows(config, kind: str, train_rows: list[dict] | None, eval_rows: list[dict] | None) -> tuple[list[dict], list[dict]]:
    """Rows given in Python win; else config.data, with config.eval_data or a seeded eval_fraction split."""
    if train_rows is not None:
        return train_rows, eval_rows or []
    train_rows = load_rows(config.data, kind)
    if eval_rows is None and config.eval_data is not None:
        eval_rows = load_rows(config.eval_data, kind)
    elif eval_rows is None:
        train_rows, eval_rows = split_rows(train_rows, config.eval_fraction, config.seed)
    return train_rows, eval_rows


def _read_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise ConfigError(f"data file {str(path)!r} does not exist")
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg}); expected one object per line") from None
            rows.append(_check_row(row, fields, f"{path}:{number}"))
    if not rows:
        raise ConfigError(f"{path}: no rows; expected JSON objects with fields {list(fields)}, one per line")
    return rows


def _check_row(row: Any, fields: tuple[str, ...], where: str) -> dict[str, str]:
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: expected an object with fields {list(fields)}, got {type(row).__name__}")
    for name in fields:
        if name not in row:
            raise ConfigError(f"{where}: missing field {name!r}; expected fields {list(fields)} (found {sorted(row)})")
        if not isinstance(row[name], str):
            raise ConfigError(f"{where}: field {name!r} must be a string, got {type(row[name]).__name__}")
    return {name: row[name] for name in fields}
