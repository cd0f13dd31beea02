"""From the reward's scores to per-token rewards: the missing-EOS penalty, normalization (over every rank's batch, or
running), clipping, and the per-token KL penalty with the score on the last real token."""

from __future__ import annotations

import torch

from ppokit.core.running_stats import RunningMeanStd
from ppokit.lm.parallel import gather_batch


def per_token_rewards(scores: torch.Tensor, kl: torch.Tensor | None, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """-kl_coef * KL at every real token (none without a KL in the reward), plus the sequence's score on its last real token."""
    rewards = -kl_coef * kl * mask if kl is not None else torch.zeros_like(mask)
    rows = torch.arange(scores.shape[0], device=scores.device)
    columns = torch.arange(mask.shape[-1], device=mask.device)
    rewards[rows, (mask.long() * (columns + 1)).argmax(-1)] += scores
    return rewards


def penalized(raw_scores: torch.Tensor, has_eos: torch.Tensor, missing_eos_penalty: float | None) -> torch.Tensor:
    """The scores less ``missing_eos_penalty`` where a response was cut at max_new_tokens without its EOS."""
    scores = raw_scores.clone()
    if missing_eos_penalty is not None:
        scores[~has_eos] -= missing_eos_penalty
    return scores


class ScoreNormalizer:
    """``mode`` 'batch': by the global batch's mean and std; 'running': by running moments over the run (saved in
    checkpoints); 'none'. Then clipped to +-``clip`` (None: not clipped)."""

    def __init__(self, mode: str, clip: float | None, device: torch.device, world):
        self.mode, self.clip, self.world = mode, clip, world
        self.moments = RunningMeanStd.fresh(device=device)

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        every_rank = gather_batch(scores, self.world) if self.mode != "none" else scores  # every rank's scores, in rank order
        if self.mode == "batch" and every_rank.numel() > 1:
            scores = (scores - every_rank.mean()) / (every_rank.std() + 1e-8)
        elif self.mode == "running":
            self.moments.update(every_rank)
            mean, std = self.moments.mean, torch.sqrt(self.moments.var + 1e-8)
            scores = (scores - mean.to(scores.dtype)) / std.to(scores.dtype)
        if self.clip is not None:
            scores = scores.clamp(-self.clip, self.clip)
        return scores
