"""Training checkpoints of the language-model trainers: model weights, optimizer state and counters
as safetensors + JSON through ppokit.checkpoint (atomic, the newest few kept, nothing pickled).
They are written for inspection and recovery by hand; `ppokit lm` has no --resume yet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppokit.checkpoint import save_checkpoint


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
