"""Running mean and variance, shared by the Gymnasium normalizers (numpy) and the language-model score
normalization (torch tensors on the model's device)."""

from __future__ import annotations

import numpy as np


class RunningMeanStd:
    """Mean and variance over every batch seen so far (Chan et al.'s parallel update).

    The statistics are numpy arrays (float64) or torch tensors (float64, float32 where the device has
    no float64), and a batch is taken in the same kind, so the language-model trainer updates them on
    its device without a round trip through the host.
    """

    def __init__(self, stats: dict, prefix: str):
        self.mean = stats[f"{prefix}.mean"]
        self.var = stats[f"{prefix}.var"]
        self.count = stats[f"{prefix}.count"]

    def update(self, batch) -> None:
        if isinstance(self.mean, np.ndarray):
            batch = np.asarray(batch, dtype=np.float64).reshape(-1, *self.mean.shape)
            batch_var = batch.var(0)
        else:
            batch = batch.detach().to(self.mean.dtype).reshape(-1, *self.mean.shape)
            batch_var = batch.var(0, correction=0)
        batch_count = batch.shape[0]
        batch_mean = batch.mean(0)
        delta = batch_mean - self.mean
        total = self.count + batch_count
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.mean += delta * batch_count / total
        self.var[...] = m2 / total
        self.count[...] = total

    @classmethod
    def fresh(cls, shape: tuple[int, ...] = (), device=None) -> RunningMeanStd:
        """Statistics in a store of their own: mean 0, variance 1, a tiny count the first batch outweighs.

        ``device``: keep them as torch tensors there (None: numpy arrays).
        """
        stats = {"s.mean": np.zeros(shape), "s.var": np.ones(shape), "s.count": np.array(1e-4)}
        if device is not None:
            import torch

            dtype = torch.float32 if torch.device(device).type == "mps" else torch.float64  # MPS has no float64
            stats = {name: torch.as_tensor(value, dtype=dtype, device=device) for name, value in stats.items()}
        return cls(stats, "s")

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        for name in ("mean", "var", "count"):
            getattr(self, name)[...] = state[name]


def merge_over_ranks(stats: RunningMeanStd, before: dict, world) -> None:
    """Make every rank's numpy statistics the merge of all ranks' batches since ``before`` (a copy of
    ``stats.state_dict()`` taken when the ranks last agreed): each rank's own batches are recovered
    from the difference, summed over ranks as (count, count * mean, M2 + count * mean^2), and merged
    into ``before`` with the same parallel update."""
    count0, mean0, var0 = float(before["count"]), before["mean"], before["var"]
    count1 = float(stats.count)
    added = count1 - count0
    if added > 0:
        mean_b = (count1 * stats.mean - count0 * mean0) / added
        m2_b = stats.var * count1 - var0 * count0 - (mean_b - mean0) ** 2 * count0 * added / count1
    else:
        mean_b, m2_b = np.zeros_like(mean0), np.zeros_like(var0)
    shape = np.shape(mean0)
    local = np.concatenate([[added], np.ravel(added * mean_b), np.ravel(m2_b + added * mean_b**2)])
    total = world.sum(local)
    n = float(total[0])
    stats.load_state_dict(before)
    if n <= 0:
        return
    size = int(np.prod(shape, dtype=np.int64))
    mean_all = total[1 : 1 + size].reshape(shape) / n
    m2_all = total[1 + size :].reshape(shape) - n * mean_all**2
    delta = mean_all - mean0
    combined = count0 + n
    stats.mean[...] = mean0 + delta * n / combined
    stats.var[...] = (var0 * count0 + m2_all + delta**2 * count0 * n / combined) / combined
    stats.count[...] = combined
