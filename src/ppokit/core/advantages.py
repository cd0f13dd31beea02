"""Generalized advantage estimation on time-major [T, B] tensors.

Two flags are kept apart on purpose:
- ``terminated[t]``: the episode really ended at step t, so nothing is bootstrapped after it;
- ``dones[t]``: the episode ended at step t for any reason (termination or time-limit truncation),
  so the advantage trace is cut there.
A truncated step is done but not terminated: its ``next_values[t]`` must be V(final observation).
"""

from __future__ import annotations

import torch


def next_values_from(values: torch.Tensor, last_value: torch.Tensor) -> torch.Tensor:
    """V(s_{t+1}) for every step of a contiguous rollout: values shifted by one, then the bootstrap."""
    return torch.cat([values[1:], last_value.reshape(1, *values.shape[1:])], dim=0)


def gae_reference(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain scalar loop, one env and one step at a time: the definition the fast version must match."""
    num_steps, num_envs = rewards.shape
    advantages = torch.zeros(num_steps, num_envs, dtype=torch.float64)
    for b in range(num_envs):
        running = 0.0
        for t in reversed(range(num_steps)):
            bootstrap = 0.0 if bool(terminated[t, b]) else gamma * float(next_values[t, b])
            delta = float(rewards[t, b]) + bootstrap - float(values[t, b])
            carried = 0.0 if bool(dones[t, b]) else gamma * gae_lambda * running
            running = delta + carried
            advantages[t, b] = running
    advantages = advantages.to(rewards.dtype)
    return advantages, advantages + values


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectorized over the batch axis; returns (advantages, returns = advantages + values)."""
    not_terminated = 1.0 - terminated.to(rewards.dtype)
    deltas = rewards + gamma * next_values * not_terminated - values
    # Where the episode ended, the trace from the next episode must not leak back.
    decay = (gamma * gae_lambda) * (1.0 - dones.to(rewards.dtype))
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    # unbind once: indexing tensors inside the loop costs more than the arithmetic at these sizes
    delta_rows, decay_rows = deltas.unbind(0), decay.unbind(0)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = delta_rows[t] + decay_rows[t] * running
        advantages[t] = running
    return advantages, advantages + values
