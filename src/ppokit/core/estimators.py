"""Advantage estimators for sequences, behind one registry: PPO's GAE and the critic-free family.

Every estimator takes the same ``AdvantageInputs`` (per-token rewards, the sequences' scores, the
response mask, group ids, values where it needs them) and returns ``(advantages, returns)``, both
[B, T] and 0 on padding. What tells PPO, GRPO, Dr. GRPO, RLOO and REINFORCE++ apart is only this
function (and, for Dr. GRPO, the loss aggregation); the clipped surrogate and the update loop are
the same for all of them.

A new estimator is one function and one ``@register_estimator`` line; ``ADVANTAGE_ESTIMATORS`` is
what the trainers and their config validation read. Groups: the responses sampled for one prompt
share a group id; a group's statistics are its own rows (a group stays in one process under data
parallel), while REINFORCE++ whitens over every rank's tokens (``world``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ppokit.core.advantages import gae, next_values_from
from ppokit.core.batch import last_token_index
from ppokit.core.losses import masked_whiten, masked_whiten_over_ranks

# GRPO divides by the group's std plus this: a group whose rewards are all equal gets advantage 0, not NaN
GROUP_STD_EPS = 1e-6


@dataclass(frozen=True)
class AdvantageInputs:
    token_rewards: torch.Tensor
    """[B, T] per-token rewards: -kl_coef x KL where the KL penalty is in the reward, plus the score on the last real token."""
    scores: torch.Tensor
    """[B] each sequence's score alone (the reward of the finished text, after penalties and normalization)."""
    mask: torch.Tensor
    """[B, T] 1 on real response tokens, 0 on padding."""
    group_ids: torch.Tensor | None = None
    """[B] integers: the responses to one prompt share an id. Needed by the group estimators."""
    values: torch.Tensor | None = None
    """[B, T] the value model's estimates. Needed by gae."""
    gamma: float = 1.0
    gae_lambda: float = 0.95
    world: object = None
    """ppokit.distributed.World for statistics over every rank's tokens (None: one process)."""


@dataclass(frozen=True)
class Estimator:
    name: str
    function: Callable[[AdvantageInputs], tuple[torch.Tensor, torch.Tensor]]
    needs_values: bool
    needs_groups: bool


ADVANTAGE_ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str, *, needs_values: bool = False, needs_groups: bool = False):
    """Register ``function(inputs) -> (advantages, returns)`` under ``name``; its docstring says what it computes."""

    def register(function):
        ADVANTAGE_ESTIMATORS[name] = Estimator(name, function, needs_values, needs_groups)
        return function

    return register


def estimate_advantages(name: str, inputs: AdvantageInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) [B, T] of the estimator ``name``, 0 on padding."""
    if name not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {name!r}; expected one of {sorted(ADVANTAGE_ESTIMATORS)}")
    estimator = ADVANTAGE_ESTIMATORS[name]
    if estimator.needs_values and inputs.values is None:
        raise ValueError(f"advantage estimator {name!r} needs values (a value model)")
    if estimator.needs_groups and inputs.group_ids is None:
        raise ValueError(f"advantage estimator {name!r} needs group ids (several responses per prompt)")
    advantages, returns = estimator.function(inputs)
    return advantages * inputs.mask, returns * inputs.mask


def group_statistics(values: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row: its group's size, sum and sample standard deviation (Bessel's correction; 0 for a group of one)."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    groups = int(inverse.max()) + 1
    sizes = torch.zeros(groups, dtype=values.dtype, device=values.device).index_add_(0, inverse, torch.ones_like(values))
    sums = torch.zeros(groups, dtype=values.dtype, device=values.device).index_add_(0, inverse, values)
    means = sums / sizes
    squares = torch.zeros(groups, dtype=values.dtype, device=values.device).index_add_(0, inverse, (values - means[inverse]) ** 2)
    stds = torch.sqrt(squares / (sizes - 1).clamp(min=1))
    return sizes[inverse], sums[inverse], stds[inverse]


def sequence_returns(inputs: AdvantageInputs) -> torch.Tensor:
    """[B] each sequence's total reward: its score, plus its KL penalty where that is in the reward."""
    return (inputs.token_rewards * inputs.mask).sum(-1)


def on_every_token(per_sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return per_sequence.unsqueeze(-1) * mask


def rewards_to_go(token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """sum over t' >= t of gamma^(t'-t) r_t', per row, over real tokens."""
    running = torch.zeros_like(token_rewards[:, 0])
    returns = torch.zeros_like(token_rewards)
    rewards = token_rewards * mask
    for t in range(token_rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return returns


@register_estimator("gae", needs_values=True)
def gae_estimator(inputs: AdvantageInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(gamma, lambda) over response tokens with a learned value model (PPO): the core's GAE, time-major, each response
    one episode that ends (terminated, no bootstrap) at its last real token."""
    mask = inputs.mask.float()
    rewards_t, values_t = (inputs.token_rewards * mask).T, (inputs.values * mask).T
    columns = torch.arange(mask.shape[1], device=mask.device)
    after_last = columns.unsqueeze(1) >= last_token_index(mask).unsqueeze(0)  # [T, B]
    advantages, returns = gae(rewards_t, values_t, next_values_from(values_t, values_t.new_zeros(mask.shape[0])),
                              terminated=after_last, dones=after_last, gamma=inputs.gamma, gae_lambda=inputs.gae_lambda)
    return advantages.T, returns.T


@register_estimator("grpo", needs_groups=True)
def grpo_estimator(inputs: AdvantageInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """A_i = (r_i - mean_g) / (std_g + eps), on every token."""
    rewards = sequence_returns(inputs)
    sizes, sums, stds = group_statistics(rewards, inputs.group_ids)
    advantages = on_every_token((rewards - sums / sizes) / (stds + GROUP_STD_EPS), inputs.mask)
    return advantages, advantages


@register_estimator("dr_grpo", needs_groups=True)
def dr_grpo_estimator(inputs: AdvantageInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """A_i = r_i - mean_g (no division by the std), on every token."""
    rewards = sequence_returns(inputs)
    sizes, sums, _ = group_statistics(rewards, inputs.group_ids)
    advantages = on_every_token(rewards - sums / sizes, inputs.mask)
    return advantages, advantages


@register_estimator("rloo", needs_groups=True)
def rloo_estimator(inputs: AdvantageInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """A_i = r_i - mean of the other responses of the group (leave-one-out)."""
    rewards = sequence_returns(inputs)
    sizes, sums, _ = group_statistics(rewards, inputs.group_ids)
    advantages = on_every_token(rewards - (sums - rewards) / (sizes - 1).clamp(min=1), inputs.mask)
    return advantages, advantages


@register_estimator("reinforce++")
def reinforce_plus_plus_estimator(inputs: AdvantageInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns-to-go of the per-token rewards (gamma), whitened over the global batch's tokens."""
    returns = rewards_to_go(inputs.token_rewards, inputs.mask, inputs.gamma)
    return _whitened_over_every_rank(returns, inputs), returns


@register_estimator("reinforce++-baseline", needs_groups=True)
def reinforce_plus_plus_baseline_estimator(inputs: AdvantageInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++ with each score minus its group's mean score."""
    sizes, sums, _ = group_statistics(inputs.scores, inputs.group_ids)
    rows = torch.arange(inputs.mask.shape[0], device=inputs.mask.device)
    token_rewards = inputs.token_rewards.clone()
    token_rewards[rows, last_token_index(inputs.mask)] -= sums / sizes
    returns = rewards_to_go(token_rewards, inputs.mask, inputs.gamma)
    return _whitened_over_every_rank(returns, inputs), returns


def _whitened_over_every_rank(values: torch.Tensor, inputs: AdvantageInputs) -> torch.Tensor:
    if inputs.world is None:
        return masked_whiten(values, inputs.mask)
    return masked_whiten_over_ranks(values, inputs.mask, inputs.world)
