"""Running statistics for observation normalization and reward scaling.

Both are torch modules whose statistics are buffers, so they live in the model's state dict and are
saved and restored with it: a loaded model normalizes exactly as it did in training.
"""

from __future__ import annotations

import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Mean and variance over every batch seen so far (Chan et al.'s parallel update), in float64."""

    def __init__(self, shape: tuple[int, ...] = ()):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        # starts at a tiny count so the first batch dominates without dividing by zero
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        batch = batch.to(torch.float64).reshape(-1, *self.mean.shape)
        batch_count = batch.shape[0]
        batch_mean = batch.mean(0)
        batch_var = batch.var(0, unbiased=False)
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean += delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)


class ObservationNormalizer(nn.Module):
    """(obs - mean) / std, clipped; the identity when disabled (its buffers still exist, for loading)."""

    def __init__(self, size: int, enabled: bool, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.enabled = enabled
        self.clip = clip
        self.eps = eps
        self.stats = RunningMeanStd((size,))

    @torch.no_grad()
    def forward(self, obs: torch.Tensor, update: bool = False) -> torch.Tensor:
        if not self.enabled:
            return obs
        if update:
            self.stats.update(obs)
        mean = self.stats.mean.to(obs.dtype)
        std = torch.sqrt(self.stats.var + self.eps).to(obs.dtype)
        return ((obs - mean) / std).clamp(-self.clip, self.clip)


class RewardScaler(nn.Module):
    """Divides rewards by the running std of the discounted return (not the reward), as in PPO's paper code.

    The per-env running return is training state, not model state: it is kept outside the buffers.
    """

    def __init__(self, enabled: bool, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.enabled = enabled
        self.gamma = gamma
        self.clip = clip
        self.eps = eps
        self.stats = RunningMeanStd(())
        self._returns: torch.Tensor | None = None

    @torch.no_grad()
    def forward(self, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return rewards
        if self._returns is None or self._returns.shape != rewards.shape:
            self._returns = torch.zeros_like(rewards, dtype=torch.float64)
        self._returns = self._returns * self.gamma + rewards.to(torch.float64)
        self.stats.update(self._returns)
        self._returns[dones] = 0.0
        scaled = rewards / torch.sqrt(self.stats.var + self.eps).to(rewards.dtype)
        return scaled.clamp(-self.clip, self.clip)
