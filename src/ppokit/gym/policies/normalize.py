"""Running statistics for observation normalization and reward scaling.

The statistics are arrays of the PolicyParameters store, updated in place, so they are saved and
restored with the model: a loaded model normalizes exactly as it did in training.
"""

from __future__ import annotations

import numpy as np

from ppokit.core.running_stats import RunningMeanStd


def normalizer_statistics(obs_size: int) -> dict[str, np.ndarray]:
    """Fresh statistics of the observation normalizer and the reward scaler, named as a model saves them."""
    stats: dict[str, np.ndarray] = {}
    for prefix, shape in (("obs_normalizer.stats", (obs_size,)), ("reward_scaler.stats", ())):
        stats[f"{prefix}.mean"] = np.zeros(shape, dtype=np.float64)
        stats[f"{prefix}.var"] = np.ones(shape, dtype=np.float64)
        # a tiny starting count lets the first batch dominate without dividing by zero
        stats[f"{prefix}.count"] = np.array(1e-4, dtype=np.float64)
    return stats


class ObservationNormalizer:
    """(obs - mean) / std, clipped, as float32; the identity when disabled (the statistics still exist, for loading).

    ``columns``: normalize only these columns of the row (a Dict observation's vector keys; one-hot,
    binary and image columns pass through); None: every column.
    """

    def __init__(self, stats: RunningMeanStd, enabled: bool, clip: float = 10.0, eps: float = 1e-8, columns: np.ndarray | None = None):
        self.stats = stats
        self.enabled = enabled
        self.clip = clip
        self.eps = eps
        self.columns = columns

    def __call__(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if not self.enabled:
            return obs
        if self.columns is not None:
            out = np.array(obs, dtype=np.float32, copy=True)
            if len(self.columns):
                out[:, self.columns] = self._normalize(obs[:, self.columns], update)
            return out
        return self._normalize(obs, update)

    def _normalize(self, obs: np.ndarray, update: bool) -> np.ndarray:
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
