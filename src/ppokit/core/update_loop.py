"""The one epochs x minibatches loop of PPO, shared by every engine and both front ends.

An engine supplies the step of one minibatch (the torch engine and the language-model trainer:
autograd through ``ppokit.core.update``; the numpy engine: hand-written gradients); this loop owns
the epochs, the minibatch slicing, the target-KL stop, the non-finite skips and the statistics. It
imports no framework: the indices are whatever ``order`` returns (numpy arrays or torch tensors),
and the statistics may be floats or 0-d tensors (summed as they come, turned into floats once at
the end, so a GPU step is not synchronized per minibatch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ppokit.core.settings import UpdateSettings

# step(indices) -> the minibatch's statistics (with "grad_norm" and "ratio_max_deviation"), or
#   {"skipped": True, "ratio_max_deviation": ...} when its loss or gradient was not finite and nothing was applied,
#   or None when the target-KL test stopped the update before this minibatch was applied.
MinibatchStep = Callable[[Any], "dict[str, Any] | None"]

# reported by every update, 0 when no minibatch was applied
STAT_NAMES = ("policy_loss", "value_loss", "entropy", "old_approx_kl", "approx_kl", "clipfrac", "loss", "grad_norm")


def run_update(step: MinibatchStep, num_samples: int, settings: UpdateSettings, order: Callable[[int], Any], world=None,
               local_moments: Callable[[Any], np.ndarray] | None = None) -> dict[str, float]:
    """Run ``settings.n_epochs`` epochs over ``num_samples`` samples; ``order(epoch)`` is that epoch's permutation.

    Data parallel (``world.distributed``; ``ppokit.distributed``): every rank runs this loop on its
    own share of the samples, in lockstep. The epochs' orders are drawn first and the ranks add up
    every minibatch's (sample count, advantage sum, advantage sum of squares) from
    ``local_moments(permutation)`` (``minibatch_moments``) in one exchange; the step is called as ``step(indices, moments)`` with its
    minibatch's global row: the global count every mean divides by and the global whitening.
    The step then exchanges its gradient and returns statistics that are already global.

    Returns the statistics averaged over the applied minibatches, plus ``grad_norm``,
    ``first_ratio_deviation`` (|ratio - 1| at the first minibatch: 0 when the rollout was scored by
    the same weights), ``num_minibatches``, ``stopped_early``, ``skipped_steps`` and
    ``trailing_skipped_steps`` (skipped ones in a row at the end: a run whose every late step is
    skipped has diverged).
    """
    totals: dict[str, Any] = {}
    num_minibatches = 0
    first_ratio_deviation = None
    stopped_early = False
    skipped = trailing_skips = 0
    distributed = world is not None and world.distributed
    per_epoch = -(-num_samples // settings.minibatch_size)
    if distributed:  # every epoch's order is drawn up front, so the moments of all minibatches take one exchange
        orders = [order(epoch) for epoch in range(settings.n_epochs)]
        moments = world.sum(np.concatenate([local_moments(permutation) for permutation in orders]))
    for epoch in range(settings.n_epochs):
        permutation = orders[epoch] if distributed else order(epoch)
        for number, start in enumerate(range(0, num_samples, settings.minibatch_size)):
            indices = permutation[start : start + settings.minibatch_size]
            stats = step(indices, moments[epoch * per_epoch + number]) if distributed else step(indices)
            if stats is None:
                stopped_early = True
                break
            if first_ratio_deviation is None:
                first_ratio_deviation = float(stats["ratio_max_deviation"])
            if stats.get("skipped"):
                skipped += 1
                trailing_skips += 1
                continue
            trailing_skips = 0
            for name, value in stats.items():
                if name != "ratio_max_deviation":
                    totals[name] = totals[name] + value if name in totals else value
            num_minibatches += 1
        if stopped_early:
            break
    count = max(num_minibatches, 1)
    result = {name: float(total) / count for name, total in totals.items()}
    for name in STAT_NAMES:
        result.setdefault(name, 0.0)
    result["first_ratio_deviation"] = first_ratio_deviation if first_ratio_deviation is not None else float("nan")
    result["num_minibatches"] = float(num_minibatches)
    result["stopped_early"] = float(stopped_early)
    result["skipped_steps"] = float(skipped)
    result["trailing_skipped_steps"] = float(trailing_skips)
    return result


def minibatch_moments(advantages, mask, permutation, minibatch_size: int, units=None) -> np.ndarray:
    """[minibatches, 3] float64: each minibatch's (real samples, sum of advantages, sum of their squares).

    ``advantages`` and ``mask`` (None: every sample is real) are numpy arrays or torch tensors. With ``units``
    (a torch tensor of the units each sample counts for under a loss aggregation, e.g. one per sequence) a
    fourth column holds their sum: what a sequence-level loss of the global minibatch is a mean over.
    """
    rows = []
    for start in range(0, len(permutation), minibatch_size):
        index = permutation[start : start + minibatch_size]
        values = advantages[index]
        weights = mask[index] if mask is not None else None
        if isinstance(values, np.ndarray):
            values = values.astype(np.float64)
            weights = np.ones_like(values) if weights is None else weights.astype(np.float64)
            rows.append((weights.sum(), (values * weights).sum(), (values * values * weights).sum()))
        else:
            values = values.double()
            weights = values.new_ones(values.shape) if weights is None else weights.double()
            rows.append(torch_sums(values, weights, units[index] if units is not None else None))
    return np.array(rows, dtype=np.float64).reshape(-1, 3 if units is None else 4)


def torch_sums(values, weights, units=None) -> tuple[float, ...]:
    import torch

    sums = [weights.sum(), (values * weights).sum(), (values * values * weights).sum()]
    if units is not None:
        sums.append(units.double().sum())
    return tuple(torch.stack(sums).cpu().tolist())


def whitening(moments) -> tuple[float, float]:
    """(mean, std) of the advantages from a global (count, sum, sum of squares) row, as the single-process
    whitening computes them (the variance over count - 1, plus 1e-8)."""
    count, total, squares = (float(x) for x in moments[:3])
    mean = total / count
    variance = max(squares - count * mean * mean, 0.0) / (count - 1)
    return mean, (variance + 1e-8) ** 0.5
