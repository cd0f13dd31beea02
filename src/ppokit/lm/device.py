"""Where the language-model trainers compute: resolving the ``device`` key, describing the device in
the run directory, moving frozen models in and out for ``offload_reference``, timing stages, and peak memory.

One code path serves CPU, CUDA and MPS: models are moved once with ``.to(device)`` and every tensor
the trainers build is created on (or moved to) the device of the model that consumes it.
"""

from __future__ import annotations

import re
import resource
import sys
import time
from contextlib import contextmanager

import torch

from ppokit.errors import ConfigError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(name: str) -> None:
    """The config-time check (no hardware is queried): one of auto, cpu, cuda, cuda:N, mps."""
    if not isinstance(name, str) or not DEVICE_PATTERN.match(name):
        raise ConfigError(f"device must be one of 'auto', 'cpu', 'cuda', 'cuda:N' (e.g. 'cuda:1') or 'mps', got {name!r}")


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA if available, else MPS, else CPU. An explicit device that this machine lacks is an error."""
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name!r}, but torch sees no CUDA GPU here (torch {torch.__version__}, "
                              f"built for CUDA {torch.version.cuda or 'none: a CPU-only build'}); use device=auto or device=cpu")
        count = torch.cuda.device_count()
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= count:
            raise ConfigError(f"device={name!r}, but this machine has {count} CUDA device(s): "
                              + ", ".join(f"cuda:{i}" for i in range(count)))
        return torch.device("cuda", index)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device='mps', but the MPS backend is not available here (Apple silicon with macOS 12.3+ only); use device=auto or device=cpu")
    return device


def rank_device(name: str, device: torch.device, world) -> torch.device:
    """Under torchrun on CUDA each process computes on the GPU of its LOCAL_RANK (``ppokit.distributed``);
    ``device`` is what ``resolve_device(name)`` gave."""
    if not world.distributed or device.type != "cuda":
        return device
    if ":" in name and int(name.split(":")[1]) != world.local_rank:
        raise ConfigError(f"device={name!r} under torchrun: each process uses the GPU of its LOCAL_RANK (this one cuda:{world.local_rank}); "
                          "set device=cuda or device=auto")
    return torch.device("cuda", world.local_rank)


def describe_device(device: torch.device) -> dict[str, str]:
    """What the run directory records about the device a run used."""
    info = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info |= {"name": properties.name, "memory_gib": f"{properties.total_memory / 2**30:.1f}", "cuda": str(torch.version.cuda)}
    elif device.type == "cpu":
        info |= {"threads": str(torch.get_num_threads())}
    return info


@contextmanager
def placed(module, device: torch.device, offload: bool):
    """Run a frozen model on ``device``; with ``offload`` it lives on the CPU between uses (memory for compute time)."""
    if module is None or not offload:
        yield module
        return
    module.to(device)
    try:
        yield module
    finally:
        module.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process in MiB, and on CUDA the peak of torch's allocations on the device."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = {"peak_rss_mib": rss / 1024 / (1024 if sys.platform == "darwin" else 1)}  # bytes on macOS, KiB on Linux
    if device.type == "cuda":
        peak["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak


def write_run_info(run_dir, trainer: str, device: torch.device, precision: str) -> None:
    """run.json in the run directory: the device a run used (resolved from 'auto'), its precision, and versions."""
    import json
    from pathlib import Path

    import transformers

    import ppokit

    info = {"trainer": trainer, **describe_device(device), "precision": precision, "transformers": transformers.__version__,
            "ppokit": ppokit.__version__}
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(json.dumps(info, indent=2) + "\n")


class StageTimer:
    """Seconds spent in each named stage since the last ``reset``; on a GPU a stage ends once its queued work is done."""

    def __init__(self, device: torch.device, stages: tuple[str, ...]):
        self.device, self.stages = device, stages
        self.reset()

    def reset(self) -> None:
        self._seconds = dict.fromkeys(self.stages, 0.0)

    def seconds(self) -> dict[str, float]:
        """As logged: time/<stage>."""
        return {f"time/{stage}": seconds for stage, seconds in self._seconds.items()}

    @contextmanager
    def timed(self, stage: str):
        self._synchronize()
        started = time.perf_counter()
        try:
            yield
        finally:
            self._synchronize()
            self._seconds[stage] += time.perf_counter() - started

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
