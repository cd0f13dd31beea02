"""What gym PPO adds under torchrun (``ppokit.distributed``): the split of envs and minibatches over the ranks,
normalizer statistics merged after each rollout, and the rollout's figures over every rank."""

from __future__ import annotations

import numpy as np

from ppokit.core.metrics import explained_variance_from_sums
from ppokit.core.running_stats import merge_over_ranks
from ppokit.distributed import check_divisible
from ppokit.errors import ConfigError
from ppokit.gym.config import PPOConfig


def check_divisible_by_world(config: PPOConfig, world) -> None:
    """Data parallel: each rank takes n_envs / N envs and minibatch_size / N samples of every minibatch
    (for policy 'lstm', whole chunks: a multiple of lstm_sequence_length)."""
    check_divisible({"n_envs": config.n_envs, "minibatch_size": config.minibatch_size}, world)
    if config.policy == "lstm" and (config.minibatch_size // world.size) % config.sequence_length:
        raise ConfigError(f"policy 'lstm' with {world.size} processes: each one's share of a minibatch (minibatch_size / {world.size} = "
                          f"{config.minibatch_size // world.size}) must be whole chunks, a multiple of lstm_sequence_length ({config.sequence_length})")


def normalizer_states(policy) -> dict[str, dict]:
    """Copies of the statistics of the policy's enabled normalizers, from when the ranks last agreed."""
    states = {}
    for name in ("obs_normalizer", "reward_scaler"):
        normalizer = getattr(policy, name, None)
        if normalizer is not None and normalizer.enabled:
            states[name] = {key: np.array(value, copy=True) for key, value in normalizer.stats.state_dict().items()}
    return states


def merge_normalizers(policy, before: dict[str, dict], world) -> None:
    """After each rollout every rank's normalizers hold the statistics of all ranks' steps (``before``: normalizer_states)."""
    for name, state in before.items():
        merge_over_ranks(getattr(policy, name).stats, state, world)


def global_rollout_figures(world, explained_sums: list[float], local_steps: int, episodes: list[tuple[float, int]]):
    """The explained variance over every rank's rollout, the env steps all ranks took and every rank's finished episodes."""
    total = world.sum(np.array([*explained_sums, local_steps], dtype=np.float64))
    every_episode = [(float(r), int(n)) for r, n in world.gather_rows(np.array(episodes, dtype=np.float64).reshape(-1, 2))]
    return explained_variance_from_sums(total[:-1]), int(total[-1]), every_episode
