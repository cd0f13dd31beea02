"""The processes of a data-parallel run, on torch.distributed.

A process launched by ``torchrun`` (or another launcher that sets its variables) finds WORLD_SIZE,
RANK, LOCAL_RANK and the rendezvous endpoint in its environment; ``current_world()`` joins the
process group (gloo on CPU, NCCL when the trainer runs on CUDA) and returns the ``World`` every
part of ppokit talks to. A plain process gets a world of one whose collectives are the identity, so
the single-process path is the same code with nothing to exchange.

Collectives on host arrays are built on ``all_gather`` and summed in rank order on every rank:
each rank then holds bitwise the same result, and on small CPU worlds one all-gather costs about
half a gloo all-reduce (measured on 2 cores: 288 against 536 microseconds).

Faults: a rank whose training raises records "rank R: <error>" in the rendezvous store before it
exits (``World.failing``); a rank whose collective then fails (its peer is gone) reads that record
and raises a ``DistributedError`` naming the rank and the cause. Every collective has the timeout
PPOKIT_DIST_TIMEOUT (seconds, default 300), so a rank that hangs cannot hold the others forever.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from collections.abc import Iterator
from datetime import timedelta

import numpy as np

from ppokit.errors import ConfigError, PPOKitError

TIMEOUT_VARIABLE = "PPOKIT_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
FAILURE_KEY = "ppokit/failure"


class DistributedError(PPOKitError):
    """A rank of a data-parallel run failed, or the ranks disagree on something they must share."""


def launched_world_size() -> int:
    """The number of processes the launcher started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_divisible(values: dict[str, int], world: World) -> None:
    """Data parallel, each rank takes value / N of these (envs, prompts per rollout, samples per minibatch)."""
    for name, value in values.items():
        if value % world.size:
            raise ConfigError(f"{name}={value} does not split evenly over {world.size} processes: data parallel, each process takes "
                              f"{name} / {world.size}; pick a multiple of {world.size} (or another --nproc_per_node)")


class World:
    """This process's place among the ranks; a world of one when not launched by torchrun."""

    def __init__(self, size: int = 1, rank: int = 0, local_rank: int = 0, backend: str = "gloo"):
        self.size, self.rank, self.local_rank = size, rank, local_rank
        # NCCL exchanges tensors on the rank's GPU only: host arrays go there and back
        self.collective_device = f"cuda:{local_rank}" if backend == "nccl" else "cpu"

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, the progress bar, checkpoints and models."""
        return self.rank == 0

    # ---------------------------------------------------------------- collectives on host arrays
    def gather(self, array: np.ndarray) -> np.ndarray:
        """[size, *array.shape]: every rank's array, in rank order, on every rank."""
        array = np.ascontiguousarray(array)
        if not self.distributed:
            return array[None]
        import torch

        local = torch.from_numpy(array.reshape(-1).copy()).to(self.collective_device)
        parts = [torch.empty_like(local) for _ in range(self.size)]
        self._collective(lambda dist: dist.all_gather(parts, local))
        return torch.stack(parts).cpu().numpy().reshape(self.size, *array.shape)

    def sum(self, array: np.ndarray) -> np.ndarray:
        """The sum over ranks, added in rank order (every rank gets the same bits)."""
        if not self.distributed:
            return np.asarray(array)
        gathered = self.gather(np.asarray(array))
        total = gathered[0].copy()
        for part in gathered[1:]:
            total += part
        return total

    def max(self, array: np.ndarray) -> np.ndarray:
        return self.gather(np.asarray(array)).max(axis=0) if self.distributed else np.asarray(array)

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any rank (a decision all ranks must take together)."""
        return bool(self.max(np.array([float(flag)]))[0]) if self.distributed else bool(flag)

    def agree_on_signal(self, signal_name: str | None) -> str | None:
        """SIGINT/SIGTERM seen by any rank, on every rank: the ranks stop together, after the same step."""
        if not self.distributed:
            return signal_name
        return (signal_name or "SIGINT/SIGTERM (on another rank)") if self.any(signal_name is not None) else None

    def gather_rows(self, rows: np.ndarray) -> np.ndarray:
        """Every rank's rows (a different number on each), concatenated in rank order."""
        if not self.distributed:
            return rows
        counts = self.gather(np.array([len(rows)], dtype=np.int64))[:, 0]
        padded = np.zeros((int(counts.max()), *rows.shape[1:]), dtype=rows.dtype)
        padded[: len(rows)] = rows
        gathered = self.gather(padded)
        return np.concatenate([gathered[r, : counts[r]] for r in range(self.size)])

    def gather_json(self, value) -> list:
        """Every rank's JSON-serializable value, in rank order (sent as UTF-8 text, never pickled)."""
        if not self.distributed:
            return [value]
        data = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
        counts = self.gather(np.array([len(data)], dtype=np.int64))[:, 0]
        padded = np.zeros(int(counts.max()), dtype=np.uint8)
        padded[: len(data)] = data
        gathered = self.gather(padded)
        return [json.loads(gathered[r, : counts[r]].tobytes().decode()) for r in range(self.size)]

    def broadcast_json(self, value):
        """Rank 0's value, on every rank."""
        return self.gather_json(value if self.is_main else None)[0] if self.distributed else value

    def broadcast_(self, array: np.ndarray) -> None:
        """Overwrite ``array`` in place with rank 0's."""
        if self.distributed:
            array[...] = self.gather(array)[0]

    def check_same(self, what: str, value) -> None:
        """A clear error when the ranks disagree on ``value`` (a config, a checkpoint, a sample count)."""
        values = self.gather_json(value)
        if any(v != values[0] for v in values):
            raise DistributedError(f"the ranks disagree on {what}: " + ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values)))

    # ---------------------------------------------------------------- faults
    def _collective(self, run):
        import torch.distributed as dist

        try:
            return run(dist)
        except RuntimeError as exc:  # gloo's and NCCL's errors (DistBackendError is a RuntimeError)
            raise DistributedError(f"rank {self.rank}: a collective failed ({self._failure_or(str(exc).splitlines()[0])})") from exc

    def _failure_or(self, fallback: str) -> str:
        """The failure another rank recorded, if any; else ``fallback``."""
        store = _default_store()
        if store is None:
            return fallback
        try:
            store.wait([FAILURE_KEY], timedelta(seconds=5))
            return store.get(FAILURE_KEY).decode()
        except Exception:  # noqa: BLE001  (no record: the peer died without raising, e.g. killed)
            return f"{fallback}; a peer process exited or was killed without recording an error"

    @contextlib.contextmanager
    def failing(self) -> Iterator[None]:
        """Record an exception raised inside in the rendezvous store, where the other ranks read it."""
        try:
            yield
        except BaseException as exc:
            if self.distributed and not isinstance(exc, DistributedError):
                store = _default_store()
                if store is not None:
                    with contextlib.suppress(Exception):
                        store.set(FAILURE_KEY, f"rank {self.rank} raised {type(exc).__name__}: {exc}")
            raise


def _default_store():
    try:
        import torch.distributed as dist

        return dist.distributed_c10d._get_default_store() if dist.is_initialized() else None
    except Exception:  # noqa: BLE001
        return None


_WORLD: World | None = None


def current_world(device_type: str = "cpu") -> World:
    """The world of this process, joining torch.distributed's process group on first use under a launcher.

    ``device_type``: 'cuda' selects NCCL (each rank on the GPU of its LOCAL_RANK); anything else gloo.
    """
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    size = launched_world_size()
    if size <= 1:
        _WORLD = World()
        return _WORLD
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_S)))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, timeout=timeout)
    _WORLD = World(dist.get_world_size(), dist.get_rank(), local_rank, dist.get_backend())
    return _WORLD


def close_world(finished: bool = True) -> None:
    """Leave the process group (at the end of a command; harmless outside a launcher).

    ``finished``: this rank ended normally, so the others are ending too and it waits for them. After
    an error it leaves at once: the others may be inside another exchange, which a barrier must not meet."""
    global _WORLD
    if _WORLD is not None and _WORLD.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            # FSDP's modules hold the group in reference cycles; freed later, at interpreter exit, gloo's threads
            # abort the process ("terminate called without an active exception"): free them while Python is alive
            gc.collect()
            # a rank that tears its connections down while another still writes can abort in gloo's threads: leave together
            if finished:
                with contextlib.suppress(Exception):  # (a peer that failed is already gone)
                    dist.barrier()
            dist.destroy_process_group()
    _WORLD = None
