"""Settings of one PPO update (kept free of torch, so every engine can share them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class UpdateSettings:
    n_epochs: int
    minibatch_size: int
    clip_range: float
    clip_range_vf: float | None = None
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float | None = 0.5
    target_kl: float | None = None
    normalize_advantage: bool = True
    grad_accum_steps: int = 1
