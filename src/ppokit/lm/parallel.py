"""Data parallel for the language-model trainers under torchrun (the processes: ``ppokit.distributed``).

Each rank takes its slice of every global batch, draws random numbers from a stream of its own, and
trains its copy of the models with gradients averaged over the ranks: DistributedDataParallel
(``parallel: ddp``), or FSDP2's ``fully_shard`` (``parallel: fsdp``), which keeps only a shard of each
weight, gradient and optimizer state on a rank and gathers a layer's whole weights while it computes.
Statistics that a single process takes over the whole batch (score normalization, advantage
whitening) are taken over every rank's share. Saving a sharded model gathers its full tensors, a
collective that every rank calls; rank 0 alone writes.

In a world of one every function here gives back what it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn


# ---------------------------------------------------------------- the data
def rank_share(items: list, world) -> list:
    """This rank's contiguous slice of a global batch (rank 0 first; the sizes differ by at most one)."""
    count = len(items)
    return items[world.rank * count // world.size : (world.rank + 1) * count // world.size]


def rank_seed(seed: int, world) -> int:
    """The seed of this rank's random streams: ``seed`` on rank 0 (a world of one runs as before), a
    stream of its own on rank r > 0 (spawn key 1000 + r, as the Gymnasium ranks)."""
    if world.rank == 0:
        return seed
    return int(np.random.SeedSequence(seed, spawn_key=(1000 + world.rank,)).generate_state(1)[0])


def gather_batch(tensor: torch.Tensor, world) -> torch.Tensor:
    """The global batch of a per-sequence tensor (the same number of rows on every rank), in rank order, on every rank."""
    if not world.distributed:
        return tensor
    gathered = world.gather(tensor.detach().cpu().numpy())
    return torch.from_numpy(gathered.reshape(-1, *tensor.shape[1:])).to(tensor.device)


# ---------------------------------------------------------------- the models
class Forwarding(nn.Module):
    """``function(model, *inputs)`` as a module's forward(). DDP exchanges the gradients of what forward()
    computes and FSDP gathers a root's weights in its forward, so a model that is run through a function
    of its parts (the scalar head of ``token_scores``) is run through this."""

    def __init__(self, model: nn.Module, function: Callable):
        super().__init__()
        self.model = model
        self.function = function

    def forward(self, *inputs, **kwargs):
        output = self.function(self.model, *inputs, **kwargs)
        # FSDP hooks its backward pass on the output, which an in-place change of a view would bypass (it warns): a tensor of its own
        return output.clone() if isinstance(output, torch.Tensor) and output._base is not None else output


def data_parallel(module: nn.Module, world, mode: str) -> nn.Module:
    """What the gradient steps run ``module`` through: itself in a world of one; with ``mode`` 'fsdp' itself,
    sharded in place; else its DistributedDataParallel wrapper (whose construction gives every rank rank 0's weights)."""
    if not world.distributed:
        return module
    if mode == "fsdp":
        shard(module, world)
        return module
    from torch.nn.parallel import DistributedDataParallel

    device = next(module.parameters()).device
    # the models' buffers (position ids, rotary tables) never change: no broadcast before every forward
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False)


def ddp_wrappers(*modules: nn.Module) -> list[nn.Module]:
    """The DistributedDataParallel ones among ``modules`` (ppo_update accumulates gradients in their no_sync())."""
    from torch.nn.parallel import DistributedDataParallel

    return [module for module in modules if isinstance(module, DistributedDataParallel)]


def shard(module: nn.Module, world) -> None:
    """FSDP2 in place: each transformer layer a unit of its own (gathered while it computes), the rest with the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    broadcast_weights(module)  # fully_shard keeps this rank's slice of its own copy: the copies must agree
    device = next(module.parameters()).device
    mesh = init_device_mesh(device.type, (world.size,))
    layers = {name for sub in module.modules() for name in (getattr(sub, "_no_split_modules", None) or [])}
    for sub in list(module.modules()):
        if sub is not module and type(sub).__name__ in layers:
            fully_shard(sub, mesh=mesh)
    fully_shard(module, mesh=mesh)


def reshard(*modules: nn.Module | None) -> None:
    """After forward passes without a backward (sampling, scoring, evaluation): FSDP keeps a root's weights gathered
    until a backward pass, registered in place of its shards; shard them again (the memory comes back, and the
    module's parameters are again the sharded ones the optimizer holds)."""
    from torch.distributed.fsdp import FSDPModule

    for module in modules:
        if isinstance(module, FSDPModule):
            module.reshard()


def broadcast_weights(module: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    import torch.distributed as dist

    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.detach(), src=0)


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole of a sharded tensor (a DTensor), gathered from every rank: a collective; any other tensor as it is."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``full`` cut as ``like`` is, when ``like`` is a DTensor (every rank holds the same ``full``, so nothing is sent)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(like, DTensor):
        return full
    return distribute_tensor(full.to(like.device), like.device_mesh, like.placements, src_data_rank=None)


def save_sharded(model: nn.Module, tokenizer, directory: str | Path, world) -> Path:
    """``save_pretrained`` of a sharded model: every rank sends its shards, rank 0 writes the whole weights."""
    from ppokit.lm.models import save_pretrained

    gathered: dict[int, torch.Tensor] = {}
    state = {}
    for name, tensor in model.state_dict(keep_vars=True).items():  # keep_vars: tied weights stay one object, gathered once
        if id(tensor) not in gathered:
            whole = full_tensor(tensor.detach())
            gathered[id(tensor)] = whole.cpu() if world.is_main else whole[:0]
        state[name] = gathered[id(tensor)]
    if world.is_main:
        save_pretrained(model, tokenizer, directory, state_dict=state)
    return Path(directory)
