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

from ppokit.core.settings import UpdateSettings

# step(indices) -> the minibatch's statistics (with "grad_norm" and "ratio_max_deviation"), or
#   {"skipped": True, "ratio_max_deviation": ...} when its loss or gradient was not finite and nothing was applied,
#   or None when the target-KL test stopped the update before this minibatch was applied.
MinibatchStep = Callable[[Any], "dict[str, Any] | None"]

# reported by every update, 0 when no minibatch was applied
STAT_NAMES = ("policy_loss", "value_loss", "entropy", "old_approx_kl", "approx_kl", "clipfrac", "loss", "grad_norm")


def run_update(step: MinibatchStep, num_samples: int, settings: UpdateSettings, order: Callable[[int], Any]) -> dict[str, float]:
    """Run ``settings.n_epochs`` epochs over ``num_samples`` samples; ``order(epoch)`` is that epoch's permutation.

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
    for epoch in range(settings.n_epochs):
        permutation = order(epoch)
        for start in range(0, num_samples, settings.minibatch_size):
            stats = step(permutation[start : start + settings.minibatch_size])
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
