"""Saved models and training checkpoints as safetensors (arrays) + JSON (everything else), written atomically.

Nothing here unpickles: safetensors holds raw arrays only and JSON holds plain data, so loading a
model or checkpoint shared by someone else cannot run their code. Both carry a format name, a format
version and the ppokit version, checked on load.

A model folder holds model.safetensors + model.json. A run's checkpoints are folders
checkpoints/update_000000123/ holding checkpoint.safetensors + checkpoint.json, each written into a
temporary folder first and renamed into place, so a crash never leaves a half-written checkpoint
under a real name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

import ppokit
from ppokit.errors import CheckpointError

MODEL_FORMAT = "ppokit.model"
MODEL_FORMAT_VERSION = 2  # 2: torch networks built from parts (version 1's names are renamed on load)
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
CHECKPOINT_FORMAT = "ppokit.checkpoint"
CHECKPOINT_FORMAT_VERSION = 2  # as MODEL_FORMAT_VERSION
CHECKPOINT_WEIGHTS_FILE = "checkpoint.safetensors"
CHECKPOINT_META_FILE = "checkpoint.json"
CHECKPOINTS_DIR = "checkpoints"


def save_model(directory: str | Path, state_dict: dict[str, np.ndarray], metadata: dict[str, Any]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.array(array, order="C") for name, array in state_dict.items()}  # a copy: 0-d stays 0-d
    meta = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "ppokit_version": ppokit.__version__, **metadata}
    _atomic_write(directory / WEIGHTS_FILE, lambda path: save_file(tensors, str(path), metadata={"format": MODEL_FORMAT}))
    _atomic_write(directory / META_FILE, lambda path: Path(path).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n"))
    return directory


def load_model(directory: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and check a saved model: returns (arrays, metadata) or raises a CheckpointError."""
    return _read_pair(Path(directory), META_FILE, WEIGHTS_FILE, MODEL_FORMAT, MODEL_FORMAT_VERSION, "model")


def save_checkpoint(run_dir: str | Path, num_updates: int, arrays: dict, state: dict[str, Any], keep: int) -> Path:
    """Write checkpoints/update_<num_updates>/ atomically and delete all but the newest ``keep``.

    ``arrays``: numpy arrays, or torch tensors (any device and dtype, bfloat16 included), all of one kind.
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    meta = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION, "ppokit_version": ppokit.__version__, **state}
    staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=root))
    try:
        _save_tensors(arrays, staging / CHECKPOINT_WEIGHTS_FILE, {"format": CHECKPOINT_FORMAT})
        (staging / CHECKPOINT_META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        final = root / f"update_{num_updates:09d}"
        if final.exists():  # the same update saved twice (an interval that falls on the last update)
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("update_"))


def load_checkpoint(path: str | Path, framework: str = "numpy") -> tuple[dict, dict[str, Any], Path]:
    """Read and check a checkpoint folder, or the newest checkpoint of a run folder.

    Returns (arrays, metadata, the checkpoint folder) or raises a CheckpointError; ``framework``
    "pt" gives torch tensors on the CPU (needed for bfloat16, which numpy lacks).
    """
    path = Path(path)
    if not (path / CHECKPOINT_META_FILE).exists():
        found = list_checkpoints(path)
        if not found:
            raise CheckpointError(f"{str(path)!r} holds no ppokit checkpoint: expected {CHECKPOINTS_DIR}/update_*/ or {CHECKPOINT_META_FILE} in it")
        path = found[-1]
    arrays, meta = _read_pair(path, CHECKPOINT_META_FILE, CHECKPOINT_WEIGHTS_FILE, CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, "checkpoint", framework)
    return arrays, meta, path


def _save_tensors(arrays: dict, path: Path, metadata: dict[str, str]) -> None:
    if any(not isinstance(array, np.ndarray) and hasattr(array, "detach") for array in arrays.values()):
        from safetensors.torch import save_file as save_torch_file

        seen: set[int] = set()
        save_torch_file({name: _writable(t.detach(), seen) for name, t in arrays.items()}, str(path), metadata=metadata)
    else:
        save_file({name: np.array(array, order="C") for name, array in arrays.items()}, str(path), metadata=metadata)


def _writable(tensor, seen: set[int]):
    """The tensor as safetensors writes it: itself when it is a contiguous CPU tensor owning its whole storage, else a copy
    (safetensors refuses views and tensors sharing storage). Copying every tensor would hold a second checkpoint in memory."""
    storage = tensor.untyped_storage() if tensor.device.type == "cpu" else None
    owns_storage = storage is not None and tensor.is_contiguous() and tensor.storage_offset() == 0 and \
        storage.nbytes() == tensor.numel() * tensor.element_size() and storage.data_ptr() not in seen
    if owns_storage:
        seen.add(storage.data_ptr())
        return tensor
    return tensor.to("cpu", copy=True).contiguous()


def _read_pair(directory: Path, meta_name: str, weights_name: str, expected_format: str, supported_version: int, kind: str,
               framework: str = "numpy"):
    meta_path, weights_path = directory / meta_name, directory / weights_name
    if not meta_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{str(directory)!r} is not a ppokit {kind} folder: expected {meta_name} and {weights_name} in it")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not valid JSON ({exc}); expected the {kind} metadata ppokit writes") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{meta_path}: not a ppokit {kind} (format {found!r}, expected {expected_format!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > supported_version:
        raise CheckpointError(
            f"{meta_path}: {kind} format version {version!r} is newer than this ppokit understands "
            f"({supported_version}); upgrade ppokit (saved by ppokit {meta.get('ppokit_version')})"
        )
    if not isinstance(meta.get("ppokit_version"), str):
        raise CheckpointError(f"{meta_path}: the {kind} does not record the ppokit version that wrote it")
    try:
        if framework == "pt":
            from safetensors.torch import load_file as load_torch_file

            arrays = load_torch_file(str(weights_path), device="cpu")
        else:
            arrays = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    return arrays, meta


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
