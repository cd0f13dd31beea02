"""Running statistics for observation normalization and reward scaling.

The statistics are arrays of the PolicyParameters store, updated in place, so they are saved and
restored with the model: a loaded model normalizes exactly as it did in training.
"""

from __future__ import annotations

import numpy as np


class RunningMeanStd:
    """Mean and variance over every batch seen so far (Chan et al.'s parallel update), in float64."""

    def __init__(self, stats: dict[str, np.ndarray], prefix: str):
        self.mean = stats[f"{prefix}.mean"]
        self.var = stats[f"{prefix}.var"]
        self.count = stats[f"{prefix}.count"]

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, dtype=np.float64).reshape(-1, *self.mean.shape)
        batch_count = batch.shape[0]
        batch_mean = batch.mean(0)
        batch_var = batch.var(0)
        delta = batch_mean - self.mean
        total = self.count + batch_count
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.mean += delta * batch_count / total
        self.var[...] = m2 / total
        self.count[...] = total


class ObservationNormalizer:
    """(obs - mean) / std, clipped, as float32; the identity when disabled (the statistics still exist, for loading)."""

    def __init__(self, stats: RunningMeanStd, enabled: bool, clip: float = 10.0, eps: float = 1e-8):
        self.stats = stats
        self.enabled = enabled
        self.clip = clip
        self.eps = eps

    def __call__(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if not self.enabled:
            return obs
        if update:
            self.stats.update(obs)
        normalized = (obs - self.stats.mean) / np.sqrt(self.stats.var + self.eps)
        return np.clip(normalized, -self.clip, self.clip).astype(np.float32)


class RewardScaler:
    """Divides rewards by the running std of the discounted return (not the reward), as in PPO's paper code.

    The per-env running return is training state, not model state: it is kept outside the statistics.
    """

    def __init__(self, stats: RunningMeanStd, enabled: bool, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        self.stats = stats
        self.enabled = enabled
        self.gamma = gamma
        self.clip = clip
        self.eps = eps
        self.returns: np.ndarray | None = None

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        rewards = np.asarray(rewards, dtype=np.float64)
        if not self.enabled:
            return rewards.astype(np.float32)
        if self.returns is None or self.returns.shape != rewards.shape:
            self.returns = np.zeros_like(rewards)
        self.returns = self.returns * self.gamma + rewards
        self.stats.update(self.returns)
        self.returns[dones] = 0.0
        scaled = rewards / np.sqrt(self.stats.var + self.eps)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)
