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


def explained_variance_sums(values, returns, mask=None) -> list[float]:
    """(count, sum and sum of squares of the returns, and of returns - values): a share of the data
    whose sums over ranks give the global explained variance (``explained_variance_from_sums``)."""
    weights = returns * 0 + 1 if mask is None else mask
    residual = returns - values
    return [float(weights.sum()), float((returns * weights).sum()), float((returns * returns * weights).sum()),
            float((residual * weights).sum()), float((residual * residual * weights).sum())]


def explained_variance_from_sums(sums) -> float:
    count, total, squares, residual_total, residual_squares = (float(x) for x in sums)
    spread = squares - total * total / count
    if spread <= 0.0:
        return float("nan")
    return 1.0 - (residual_squares - residual_total * residual_total / count) / spread
