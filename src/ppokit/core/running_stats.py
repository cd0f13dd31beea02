"""Running mean and variance, shared by the Gymnasium normalizers and the language-model score normalization."""

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

    @classmethod
    def fresh(cls, shape: tuple[int, ...] = ()) -> "RunningMeanStd":
        """Statistics in a store of their own: mean 0, variance 1, a tiny count the first batch outweighs."""
        stats = {"s.mean": np.zeros(shape), "s.var": np.ones(shape), "s.count": np.array(1e-4)}
        return cls(stats, "s")
