"""The rollout container: named time-major [T, B, ...] tensors sharing one [T, B] mask."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class RolloutBatch:
    """Time-major rollout data.

    Every tensor in ``fields`` has shape [T, B, ...]. ``mask`` is [T, B] with 1 for real steps and
    0 for padding (language-model responses shorter than T, or the reset steps of vector envs that
    reset on the step after an episode ends). The fields may be torch tensors or numpy arrays.
    """

    fields: dict[str, torch.Tensor]
    mask: torch.Tensor | None = None
    _shape: tuple[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shapes = {name: tuple(t.shape[:2]) for name, t in self.fields.items()}
        if not shapes:
            raise ValueError("RolloutBatch needs at least one field")
        first = next(iter(shapes.values()))
        bad = {n: s for n, s in shapes.items() if s != first}
        if bad:
            raise ValueError(f"all fields must share the leading [T, B] shape {first}; got {bad}")
        if self.mask is not None and tuple(self.mask.shape) != first:
            raise ValueError(f"mask shape {tuple(self.mask.shape)} does not match [T, B] = {first}")
        self._shape = first

    @property
    def num_steps(self) -> int:
        return self._shape[0]

    @property
    def num_envs(self) -> int:
        return self._shape[1]

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.fields[name]

    def flatten(self) -> dict[str, torch.Tensor]:
        """Merge T and B into one sample axis, as the Gymnasium front end trains on single steps."""
        n = self._shape[0] * self._shape[1]
        out = {name: t.reshape(n, *t.shape[2:]) for name, t in self.fields.items()}
        if self.mask is not None:
            out["mask"] = self.mask.reshape(n)
        return out


def minibatch_indices(num_samples: int, minibatch_size: int, generator: torch.Generator | None = None, permutation: torch.Tensor | None = None):
    """Yield index tensors covering ``permutation`` (default: a fresh random one) of the samples once."""
    import torch

    perm = torch.randperm(num_samples, generator=generator, device="cpu") if permutation is None else permutation
    for start in range(0, num_samples, minibatch_size):
        yield perm[start : start + minibatch_size]


def micro_batch_slices(size: int, parts: int) -> list[slice]:
    """How a minibatch of ``size`` samples is split for ``parts``-step gradient accumulation.

    Defined once: the update evaluates these micro-batches, and a caller that scores a rollout in the
    update's own layout (so the first ratio is exactly 1) splits the same way.
    """
    chunk = math.ceil(size / max(parts, 1)) if size else 1
    return [slice(start, start + chunk) for start in range(0, size, chunk)]


def last_token_index(mask):
    """Column of each row's last real token (mask [B, T], 1 on real steps), whatever the padding side."""
    import torch

    columns = torch.arange(mask.shape[-1], device=mask.device)
    return (mask.long() * (columns + 1)).argmax(-1)
