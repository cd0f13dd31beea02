"""Evaluate a policy for an exact number of episodes on a vector env."""

from __future__ import annotations

import numpy as np

from ppokit.gym.envs import EnvSource, make_vector_env


def evaluate_policy(agent, env: EnvSource | None = None, episodes: int = 20, deterministic: bool = True, seed: int | None = None,
                    max_envs: int = 8) -> list[float]:
    """Returns the undiscounted return of each of ``episodes`` episodes.

    Each env copy runs a fixed share of the episodes, so short episodes are not over-counted
    (stopping at the first N finished episodes would favour them).
    """
    source = env if env is not None else agent.env_source
    n_envs = max(1, min(episodes, max_envs))
    targets = np.array([episodes // n_envs + (1 if i < episodes % n_envs else 0) for i in range(n_envs)])
    counts = np.zeros(n_envs, dtype=np.int64)
    running = np.zeros(n_envs)
    returns: list[float] = []
    envs = make_vector_env(source, n_envs, "sync", agent.config.env_kwargs)
    try:
        obs, _ = envs.reset(seed=agent.config.seed + 10_000 if seed is None else seed)
        while (counts < targets).any():
            actions = agent.predict(obs, deterministic=deterministic)
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            running += rewards
            for i in np.flatnonzero(terminated | truncated):
                if counts[i] < targets[i]:
                    returns.append(float(running[i]))
                    counts[i] += 1
                running[i] = 0.0
    finally:
        envs.close()
    return returns
