"""The PPO update's hyperparameters, defined and validated once (kept free of torch, so every engine can share them).

``UpdateFields`` is a base of both front ends' configs (``ppokit.gym.config.PPOConfig`` and
``ppokit.lm.config.LMPPOConfig``), which change only some defaults; ``UpdateSettings`` is what one
update runs with.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ppokit.errors import ConfigError


@dataclass
class UpdateFields:
    n_epochs: int = 10
    """Passes over each rollout."""
    minibatch_size: int = 64
    """Samples per gradient step (rl-baselines3-zoo calls it batch_size; language models: responses)."""
    clip_range: float = 0.2
    """PPO ratio clip: the ratio is clipped to [1 - clip_range, 1 + clip_range]."""
    clip_range_vf: float | None = None
    """Clip the value update around the old values by this much; null disables value clipping."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss (mean squared error, no factor 1/2)."""
    max_grad_norm: float | None = 0.5
    """Global gradient-norm clip; null disables it."""
    target_kl: float | None = None
    """Stop the epochs of an update early once the approximate KL exceeds 1.5 x this; null disables."""
    normalize_advantage: bool = True
    """Whiten advantages per minibatch."""

    def validate_update_fields(self) -> None:
        for name in ("n_epochs", "minibatch_size"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value}")
        if not (math.isfinite(self.clip_range) and self.clip_range > 0):
            raise ConfigError(f"clip_range must be a positive number, got {self.clip_range}")
        for name in ("clip_range_vf", "max_grad_norm", "target_kl"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number or null (disabled), got {value}")
        for name in ("ent_coef", "vf_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a non-negative number, got {value}")

    def update_settings(self, **overrides) -> UpdateSettings:
        """The settings of one update: these fields, with ``overrides`` (a scheduled clip range, grad_accum_steps)."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(UpdateFields)}
        return UpdateSettings(**(values | overrides))


@dataclass
class UpdateSettings(UpdateFields):
    grad_accum_steps: int = 1
    """Split each minibatch into this many micro-batches (torch steps only)."""
    clip_range_high: float | None = None
    """Upper ratio clip, 1 + clip_range_high; None: clip_range (symmetric). clip_range is the lower one (torch steps only)."""
    loss_aggregation: str = "token-mean"
    """How per-token losses of sequences become one loss (``ppokit.core.losses.loss_aggregation``; torch steps only)."""
    aggregation_horizon: int | None = None
    """The longest sequence allowed, which seq-mean-token-sum-norm divides each sequence's token sum by."""
    kl_loss_coef: float = 0.0
    """Weight of the k3 KL to a reference policy as a term of the loss; the samples then carry ``ref_logprobs``."""
