"""Saved models as safetensors (tensors) + JSON (everything else), written atomically.

Nothing here unpickles: safetensors holds raw tensors only and JSON holds plain data, so loading a
model shared by someone else cannot run their code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

import ppokit
from ppokit.errors import CheckpointError

MODEL_FORMAT = "ppokit.model"
MODEL_FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


def save_model(directory: str | Path, state_dict: dict[str, np.ndarray], metadata: dict[str, Any]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.array(array, order="C") for name, array in state_dict.items()}  # a copy: 0-d stays 0-d
    meta = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "ppokit_version": ppokit.__version__, **metadata}
    _atomic_write(directory / WEIGHTS_FILE, lambda path: save_file(tensors, str(path), metadata={"format": MODEL_FORMAT}))
    _atomic_write(directory / META_FILE, lambda path: Path(path).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n"))
    return directory


def load_model(directory: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and check a saved model: returns (tensors, metadata) or raises a CheckpointError."""
    directory = Path(directory)
    meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{str(directory)!r} is not a ppokit model folder: expected {META_FILE} and {WEIGHTS_FILE} in it")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{meta_path}: not a ppokit model (format {meta.get('format') if isinstance(meta, dict) else None!r}, expected {MODEL_FORMAT!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > MODEL_FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: model format version {version!r} is newer than this ppokit understands "
            f"({MODEL_FORMAT_VERSION}); upgrade ppokit (saved by ppokit {meta.get('ppokit_version')})"
        )
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    return tensors, meta


def check_state_dict(expected: dict[str, np.ndarray], loaded: dict[str, np.ndarray], source: str) -> None:
    """Every tensor present with the shape and dtype the config implies, and nothing else."""
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: tensors do not match the model its config describes (missing {missing}, unexpected {unexpected})")
    for name, tensor in expected.items():
        got = loaded[name]
        if tuple(got.shape) != tuple(tensor.shape) or got.dtype != tensor.dtype:
            raise CheckpointError(
                f"{source}: tensor {name!r} has shape {tuple(got.shape)} {got.dtype}, "
                f"expected {tuple(tensor.shape)} {tensor.dtype} from the saved config"
            )


def _atomic_write(path: Path, write) -> None:
    # Write beside the target and rename: a crash mid-write never leaves a half file under the real name.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
