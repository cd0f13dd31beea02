"""Diagnostics of a rollout, in plain arithmetic so they accept torch tensors and numpy arrays alike."""

from __future__ import annotations


def explained_variance(values, returns, mask=None) -> float:
    """1 - Var[returns - values] / Var[returns] over the real steps; NaN when the returns are constant."""
    weights = returns * 0 + 1 if mask is None else mask
    count = float(weights.sum())

    def spread(x) -> float:  # the sum of squared deviations: the variances' common factor cancels
        mean = (x * weights).sum() / count
        return float((((x - mean) ** 2) * weights).sum())

    total = spread(returns)
    if total == 0.0:
        return float("nan")
    return 1.0 - spread(returns - values) / total
