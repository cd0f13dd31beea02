"""Training checkpoints of the language-model trainers, and putting them back (``--resume``).

A checkpoint holds what the frozen source models cannot give back: the trained parameters (all of
them, or only a LoRA adapter's) in their own dtype, the optimizer's state, the loss scale, and every
random state (torch on the CPU and on the device, Python's, the minibatch order's), as safetensors
+ JSON through ``ppokit.checkpoint`` (atomic, the newest few kept, nothing pickled). Each trainer
adds its own counters and schedules to the JSON.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from ppokit.checkpoint import load_checkpoint, save_checkpoint
from ppokit.errors import CheckpointError, ConfigError

MODEL_PREFIX = "model."
OPTIMIZER_PREFIX = "optimizer."


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The parameters a trainer updates, by name (tied weights once)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_training_state(run_dir: str | Path, step: int, models: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer,
                        state: dict[str, Any], keep: int, device: torch.device, arrays: dict[str, torch.Tensor] | None = None,
                        grad_scaler: torch.amp.GradScaler | None = None) -> Path:
    """Write checkpoints/update_<step>/; ``state`` is the trainer's JSON part, ``arrays`` its extra tensors."""
    tensors: dict[str, torch.Tensor] = dict(arrays or {})
    for name, model in models.items():
        for key, parameter in trainable_parameters(model).items():
            tensors[f"{MODEL_PREFIX}{name}.{key}"] = parameter.detach()
    optimizer_state = optimizer.state_dict()
    for index, slots in optimizer_state["state"].items():
        for slot, value in slots.items():
            tensors[f"{OPTIMIZER_PREFIX}{index}.{slot}"] = torch.as_tensor(value).detach()
    tensors |= _rng_tensors(device)
    meta = {**state, "step": step, "optimizer_param_groups": optimizer_state["param_groups"],
            "grad_scaler": grad_scaler.state_dict() if grad_scaler is not None else None}
    return save_checkpoint(run_dir, step, tensors, meta, keep)


def load_training_state(path: str | Path, trainer: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """The newest checkpoint of a run dir (or the given checkpoint folder), checked to be ``trainer``'s."""
    arrays, meta, checkpoint_dir = load_checkpoint(path, framework="pt")
    if meta.get("trainer") != trainer:
        raise CheckpointError(f"{checkpoint_dir}: a checkpoint of {meta.get('trainer')!r}, not of {trainer!r}; resume it with the command that wrote it")
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{checkpoint_dir}: the checkpoint does not record its config")
    return arrays, meta, checkpoint_dir


def restore_training_state(arrays: dict[str, torch.Tensor], meta: dict[str, Any], source: str, models: dict[str, torch.nn.Module],
                           optimizer: torch.optim.Optimizer, device: torch.device, grad_scaler: torch.amp.GradScaler | None = None) -> None:
    """Copy parameters, optimizer state, loss scale and random states back (the models were rebuilt from the config)."""
    expected = {f"{MODEL_PREFIX}{name}.{key}": p for name, model in models.items() for key, p in trainable_parameters(model).items()}
    found = {key for key in arrays if key.startswith(MODEL_PREFIX)}
    missing, unexpected = sorted(set(expected) - found), sorted(found - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: its parameters do not match the models its config builds "
                              f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})")
    for key, parameter in expected.items():
        saved = arrays[key]
        if tuple(saved.shape) != tuple(parameter.shape) or saved.dtype != parameter.dtype:
            raise CheckpointError(f"{source}: {key} is {tuple(saved.shape)} {saved.dtype} in the checkpoint, "
                                  f"{tuple(parameter.shape)} {parameter.dtype} in the model its config builds (precision changed?)")
    with torch.no_grad():
        for key, parameter in expected.items():
            parameter.copy_(arrays[key])
    try:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in arrays.items():
            if key.startswith(OPTIMIZER_PREFIX):
                index, slot = key[len(OPTIMIZER_PREFIX):].split(".", 1)
                state.setdefault(int(index), {})[slot] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
        if grad_scaler is not None and meta.get("grad_scaler"):
            grad_scaler.load_state_dict(meta["grad_scaler"])
        _restore_rng(arrays, device)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: optimizer or random state is incomplete or malformed ({type(exc).__name__}: {exc})") from None


RESUME_OVERRIDABLE = ("device",)


def resume_overrides(overrides: dict | None) -> dict:
    """Keys a resumed run may change: where it runs, nothing that changes what it computes."""
    overrides = dict(overrides or {})
    refused = sorted(set(overrides) - set(RESUME_OVERRIDABLE))
    if refused:
        raise ConfigError(f"a resumed run keeps its saved config; only {list(RESUME_OVERRIDABLE)} may be changed, not {refused}")
    return overrides


def python_random_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_python_random_state(rng: random.Random, state: list) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


def _rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        tensors["rng.mps"] = torch.mps.get_rng_state()
    return tensors


def _restore_rng(arrays: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(arrays["rng.torch"])
    if device.type == "cuda" and "rng.cuda" in arrays:
        torch.cuda.set_rng_state(arrays["rng.cuda"], device)
    elif device.type == "mps" and "rng.mps" in arrays:
        torch.mps.set_rng_state(arrays["rng.mps"])
