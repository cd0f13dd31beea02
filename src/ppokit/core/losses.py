"""PPO loss terms as pure functions of tensors, each returning (loss, stats).

Every function takes an optional ``mask`` (1 = real step, 0 = padding) of the same shape as its
inputs; statistics are means over the real steps only. Stats are detached 0-dim tensors so the
update loop can aggregate them without a Python round trip per minibatch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ppokit.core.metrics import explained_variance  # noqa: F401  (re-exported: part of the loss toolkit)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor | None = None, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    centered_sq = (x - mean) ** 2
    if mask is None:
        count = torch.tensor(float(x.numel()), dtype=x.dtype, device=x.device)
        total = centered_sq.sum()
    else:
        count = mask.sum()
        total = (centered_sq * mask).sum()
    if unbiased:
        # Bessel's correction; with a single element the variance is defined as 0, not NaN.
        return total / (count - 1).clamp(min=1)
    return total / count.clamp(min=1)


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Scale to unit variance (and zero mean unless ``shift_mean`` is False) over the real steps."""
    mean = masked_mean(x, mask)
    whitened = (x - mean) * torch.rsqrt(masked_var(x, mask) + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened


def masked_whiten_over_ranks(x: torch.Tensor, mask: torch.Tensor, world, eps: float = 1e-8) -> torch.Tensor:
    """``masked_whiten`` over the real elements of every rank of a data-parallel ``world`` (``ppokit.distributed``):
    their mean and unbiased variance, in two exchanges, as the two passes of one process."""
    if not world.distributed:
        return masked_whiten(x, mask, eps=eps)
    count, total = world.sum(np.array([float(mask.sum()), float((x * mask).sum())]))
    mean = total / max(count, 1.0)
    squares = world.sum(np.array([float((((x - mean) ** 2) * mask).sum())]))[0]
    return (x - mean) * float((squares / max(count - 1.0, 1.0) + eps) ** -0.5)


def kl_k1(logprob: torch.Tensor, ref_logprob: torch.Tensor) -> torch.Tensor:
    """Per-element k1 estimator of KL(p || ref) from samples of p: log p - log ref (unbiased, can be < 0)."""
    return logprob - ref_logprob


def kl_k3(logprob: torch.Tensor, ref_logprob: torch.Tensor) -> torch.Tensor:
    """Per-element k3 estimator of KL(p || ref): (r - 1) - log r with r = ref / p (unbiased, always >= 0)."""
    log_r = ref_logprob - logprob
    return torch.expm1(log_r) - log_r


# aggregate(per-step values) -> the scalar a loss term is: the masked mean over real steps unless a loss aggregation says otherwise
Aggregate = Callable[[torch.Tensor], torch.Tensor]

LOSS_AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def loss_aggregation(mask: torch.Tensor | None, mode: str = "token-mean", horizon: int | None = None) -> tuple[Aggregate, torch.Tensor]:
    """How per-token losses [B, T] become one number, and how many units that number is a mean over.

    - ``token-mean``: the mean over every real token (each token weighs the same, so long sequences weigh more);
    - ``seq-mean-token-mean``: the mean over sequences of each sequence's token mean (each sequence weighs the same);
    - ``seq-mean-token-sum-norm``: the mean over sequences of each sequence's token sum divided by ``horizon``
      (the longest response allowed), which leaves no bias toward short or long responses (Dr. GRPO).
    Returns (aggregate, units): the units (real tokens, or sequences with at least one real token) weigh a
    micro-batch's share of a minibatch when gradients are accumulated or data parallel.
    """
    if mode not in LOSS_AGGREGATIONS:
        raise ValueError(f"loss aggregation must be one of {list(LOSS_AGGREGATIONS)}, got {mode!r}")
    if mode == "token-mean" or mask is None or mask.dim() < 2:
        units = mask.sum() if mask is not None else None
        return (lambda x: masked_mean(x, mask)), units
    lengths = mask.sum(-1)
    sequences = (lengths > 0).to(mask.dtype).sum()
    if mode == "seq-mean-token-mean":
        weights = mask / lengths.clamp(min=1).unsqueeze(-1)
    else:
        if not horizon:
            raise ValueError("seq-mean-token-sum-norm needs the horizon (the longest response allowed)")
        weights = mask / float(horizon)
    return (lambda x: (x * weights).sum() / sequences.clamp(min=1)), sequences


def clipped_surrogate(
    logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
    mask: torch.Tensor | None = None,
    clip_range_high: float | None = None,
    aggregate: Aggregate | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip policy loss: -min(r A, clip(r, 1-eps_low, 1+eps_high) A), averaged over real steps (or ``aggregate``d).

    ``clip_range`` is eps_low, and eps_high too unless ``clip_range_high`` is given (a larger one lets unlikely
    tokens gain probability faster: DAPO's clip-higher)."""
    high = clip_range if clip_range_high is None else clip_range_high
    log_ratio = logprob - old_logprob
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + high)
    per_step = torch.maximum(unclipped, clipped)
    loss = aggregate(per_step) if aggregate is not None else masked_mean(per_step, mask)
    with torch.no_grad():
        deviation = (ratio - 1.0).abs()
        outside = (ratio < 1.0 - clip_range) | (ratio > 1.0 + high)
        if mask is not None:
            deviation = deviation * mask
        stats = {
            # k1 and k3 estimates of KL(old || new) from samples of the old policy
            "old_approx_kl": masked_mean(-log_ratio, mask),
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
            "clipfrac": masked_mean(outside.to(ratio.dtype), mask),
            "ratio_max_deviation": deviation.max(),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip_range_vf: float | None = None,
    mask: torch.Tensor | None = None,
    aggregate: Aggregate | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Squared error to the returns; with ``clip_range_vf`` the pessimistic max of clipped and unclipped.

    No factor 1/2: ``vf_coef`` carries the weight (the rl-baselines3-zoo presets assume this).
    """
    squared = (values - returns) ** 2
    if clip_range_vf is not None:
        values_clipped = old_values + (values - old_values).clamp(-clip_range_vf, clip_range_vf)
        squared = torch.maximum(squared, (values_clipped - returns) ** 2)
    loss = aggregate(squared) if aggregate is not None else masked_mean(squared, mask)
    return loss, {"value_loss": loss.detach()}


def entropy_bonus(entropy: torch.Tensor, mask: torch.Tensor | None = None, aggregate: Aggregate | None = None
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean entropy (to be maximized: the update subtracts ent_coef times it); the reported entropy is the mean per real step."""
    mean = aggregate(entropy) if aggregate is not None else masked_mean(entropy, mask)
    return mean, {"entropy": masked_mean(entropy.detach(), mask) if aggregate is not None else mean.detach()}


def reference_kl_penalty(logprob: torch.Tensor, ref_logprob: torch.Tensor, mask: torch.Tensor | None = None,
                         aggregate: Aggregate | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The k3 estimate of KL(policy || reference) per token, aggregated as the policy loss is: the KL penalty as a
    term of the loss (GRPO's form) instead of a part of the reward. Its gradient pulls the policy toward the reference."""
    kl = kl_k3(logprob, ref_logprob)
    loss = aggregate(kl) if aggregate is not None else masked_mean(kl, mask)
    return loss, {"kl": masked_mean(kl.detach(), mask)}
