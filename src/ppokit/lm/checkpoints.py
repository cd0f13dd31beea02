"""Training checkpoints of the language-model trainers, and putting them back (``--resume``).

A checkpoint holds what the frozen source models cannot give back: the trained parameters (all of
them, or only a LoRA adapter's) in their own dtype, the optimizer's state, the loss scale, and every
random state (torch on the CPU and on the device, Python's, the minibatch order's), as safetensors
+ JSON through ``ppokit.checkpoint`` (atomic, the newest few kept, nothing pickled). Each trainer
adds its own counters and schedules to the JSON.

Data parallel (``ppokit.distributed``): every rank calls save and restore. Sharded (FSDP) weights and
optimizer states are gathered whole; each rank's random streams are stored as ``rank<R>.<name>``;
rank 0 alone writes, and the checkpoint records the world size it must be resumed with.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from ppokit.checkpoint import load_checkpoint, save_checkpoint
from ppokit.distributed import World
from ppokit.errors import CheckpointError, ConfigError
from ppokit.lm.parallel import full_tensor, shard_like

MODEL_PREFIX = "model."
OPTIMIZER_PREFIX = "optimizer."


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The parameters a trainer updates, by name (tied weights once)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_training_state(run_dir: str | Path, step: int, models: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer,
                        state: dict[str, Any], keep: int, device: torch.device, arrays: dict[str, torch.Tensor] | None = None,
                        grad_scaler: torch.amp.GradScaler | None = None, world: World | None = None,
                        rank_arrays: dict[str, torch.Tensor] | None = None) -> Path | None:
    """Write checkpoints/update_<step>/; ``state`` is the trainer's JSON part, ``arrays`` its extra tensors
    (the same on every rank), ``rank_arrays`` its random streams (each rank's own). Returns the folder
    (None on ranks other than 0, which write nothing)."""
    world = world or World()
    tensors: dict[str, torch.Tensor] = dict(arrays or {})

    def keep_on_rank0(name: str, tensor: torch.Tensor) -> None:
        whole = full_tensor(tensor.detach())  # a sharded tensor is gathered: every rank takes part
        if world.is_main:
            tensors[name] = whole

    for name, model in models.items():
        for key, parameter in trainable_parameters(model).items():
            keep_on_rank0(f"{MODEL_PREFIX}{name}.{key}", parameter)
    optimizer_state = optimizer.state_dict()
    for index, slots in optimizer_state["state"].items():
        for slot, value in slots.items():
            keep_on_rank0(f"{OPTIMIZER_PREFIX}{index}.{slot}", torch.as_tensor(value))
    streams = _rng_tensors(device) | dict(rank_arrays or {})
    if world.distributed:  # every rank's streams, so that each one continues its own
        for name, tensor in streams.items():
            every_rank = world.gather(tensor.cpu().numpy())
            tensors |= {f"rank{rank}.{name}": torch.from_numpy(every_rank[rank]) for rank in range(world.size)}
    else:
        tensors |= streams
    if not world.is_main:
        return None
    meta = {**state, "step": step, "world_size": world.size, "optimizer_param_groups": optimizer_state["param_groups"],
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
                           optimizer: torch.optim.Optimizer, device: torch.device, grad_scaler: torch.amp.GradScaler | None = None,
                           world: World | None = None) -> None:
    """Copy parameters, optimizer state, loss scale and random states back (the models were rebuilt from the config)."""
    world = world or World()
    check_world_size(meta, source, world)
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
            parameter.copy_(shard_like(arrays[key], parameter))
    try:
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in arrays.items():
            if key.startswith(OPTIMIZER_PREFIX):
                index, slot = key[len(OPTIMIZER_PREFIX):].split(".", 1)
                like = parameters[int(index)]  # a moment of a sharded parameter is sharded as it is
                state.setdefault(int(index), {})[slot] = shard_like(value, like) if value.shape == like.shape else value
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
        if grad_scaler is not None and meta.get("grad_scaler"):
            grad_scaler.load_state_dict(meta["grad_scaler"])
        prefix = f"rank{world.rank}." if world.distributed else ""
        _restore_rng({name[len(prefix):]: value for name, value in arrays.items() if name.startswith(prefix + "rng.")}, device)
    except (KeyError, ValueError, RuntimeError, IndexError) as exc:
        raise CheckpointError(f"{source}: optimizer or random state is incomplete or malformed ({type(exc).__name__}: {exc})") from None


def check_world_size(meta: dict[str, Any], source: str, world: World) -> None:
    """A run continues with as many processes as wrote it: each rank's share of the data and its random streams depend on it."""
    written_by = int(meta.get("world_size", 1))
    if written_by != world.size:
        raise CheckpointError(f"{source} was written by a run of {written_by} process(es); resume it with the same number "
                              f"(torchrun --nproc_per_node, x --nnodes), not {world.size}")


def rank_array(arrays: dict[str, torch.Tensor], name: str, world: World) -> torch.Tensor:
    """This rank's copy of a per-rank array (its random stream) from a checkpoint's arrays."""
    return arrays[f"rank{world.rank}.{name}" if world.distributed else name]


RESUME_OVERRIDABLE = ("device",)


def resume_overrides(overrides: dict | None, saved: dict, length_key: str) -> dict:
    """Keys a resumed run may change: where it runs (``device``), and its length (``length_key``: the new total, larger
    than the saved one, to train a finished run further); nothing else that changes what it computes."""
    overrides = dict(overrides or {})
    allowed = (*RESUME_OVERRIDABLE, length_key)
    refused = sorted(set(overrides) - set(allowed))
    if refused:
        raise ConfigError(f"a resumed run keeps its saved config; only {list(allowed)} may be changed ({length_key}: the new total, "
                          f"to train further), not {refused}")
    if length_key in overrides:
        value, before = overrides[length_key], saved.get(length_key)
        if not isinstance(value, int) or isinstance(value, bool) or (isinstance(before, int) and value <= before):
            raise ConfigError(f"{length_key}={value!r}: to train a resumed run further, give the new total, an integer larger than the "
                              f"run's {length_key}={before}")
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
