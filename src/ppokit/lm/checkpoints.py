"""Training checkpoints of the language-model trainers: model weights, optimizer state and counters
as safetensors + JSON through ppokit.checkpoint (atomic, the newest few kept, nothing pickled)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppokit.checkpoint import load_checkpoint, save_checkpoint


def save_training_state(run_dir: str | Path, step: int, models: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer,
                        state: dict[str, Any], keep: int) -> Path:
    arrays: dict[str, np.ndarray] = {}
    for name, model in models.items():
        for key, tensor in model.state_dict().items():
            arrays[f"model.{name}.{key}"] = tensor.detach().cpu().float().numpy()
    optimizer_state = optimizer.state_dict()
    for index, slots in optimizer_state["state"].items():
        for slot, value in slots.items():
            arrays[f"optimizer.{index}.{slot}"] = torch.as_tensor(value).detach().cpu().numpy()
    arrays["rng.torch"] = torch.get_rng_state().numpy()
    meta = {**state, "step": step, "optimizer_param_groups": optimizer_state["param_groups"]}
    return save_checkpoint(run_dir, step, arrays, meta, keep)


def load_training_state(path: str | Path, models: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore what save_training_state wrote (the newest checkpoint when ``path`` is a run folder)."""
    arrays, meta, _ = load_checkpoint(path)
    for name, model in models.items():
        prefix = f"model.{name}."
        weights = {key[len(prefix):]: torch.from_numpy(value) for key, value in arrays.items() if key.startswith(prefix)}
        model.load_state_dict(weights, strict=True)
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in arrays.items():
        if key.startswith("optimizer."):
            _, index, slot = key.split(".", 2)
            slots.setdefault(int(index), {})[slot] = torch.from_numpy(value)
    optimizer.load_state_dict({"state": slots, "param_groups": meta["optimizer_param_groups"]})
    torch.set_rng_state(torch.from_numpy(arrays["rng.torch"]))
    return meta
