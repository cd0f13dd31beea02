"""Generalized advantage estimation on time-major [T, B] tensors.

Two flags are kept apart on purpose:
- ``terminated[t]``: the episode really ended at step t, so nothing is bootstrapped after it;
- ``dones[t]``: the episode ended at step t for any reason (termination or time-limit truncation),
  so the advantage trace is cut there.
A truncated step is done but not terminated: its ``next_values[t]`` must be V(final observation).

The functions use only arithmetic, indexing and copying, so they accept torch tensors and numpy
arrays alike (the numpy engine of the Gymnasium front end calls them without importing torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def next_values_from(values: torch.Tensor, last_value: torch.Tensor) -> torch.Tensor:
    """V(s_{t+1}) for every step of a contiguous rollout: values shifted by one, then the bootstrap."""
    shifted = values * 1  # a copy of the same kind (tensor or array)
    shifted[:-1] = values[1:]
    shifted[-1] = last_value.reshape(values.shape[1:])
    return shifted


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
    advantages = [[0.0] * num_envs for _ in range(num_steps)]
    for b in range(num_envs):
        running = 0.0
        for t in reversed(range(num_steps)):
            bootstrap = 0.0 if bool(terminated[t, b]) else gamma * float(next_values[t, b])
            delta = float(rewards[t, b]) + bootstrap - float(values[t, b])
            carried = 0.0 if bool(dones[t, b]) else gamma * gae_lambda * running
            running = delta + carried
            advantages[t][b] = running
    result = rewards * 0
    for t in range(num_steps):
        for b in range(num_envs):
            result[t, b] = advantages[t][b]
    return result, result + values


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
    bootstrap = next_values * ~terminated  # boolean masks: the product keeps the values' dtype
    deltas = rewards + gamma * bootstrap - values
    # Where the episode ended, the trace from the next episode must not leak back.
    decay = (values * 0 + gamma * gae_lambda) * ~dones
    advantages = rewards * 0
    running = advantages[0] * 1
    # split into rows once: indexing inside the loop costs more than the arithmetic at these sizes
    delta_rows, decay_rows = list(deltas), list(decay)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = delta_rows[t] + decay_rows[t] * running
        advantages[t] = running
    return advantages, advantages + values
