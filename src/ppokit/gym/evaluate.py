"""Evaluate a policy for an exact number of episodes on a vector env."""

from __future__ import annotations

import numpy as np

from ppokit.gym.atari import finished_games, is_atari_id
from ppokit.gym.envs import EnvSource, make_vector_env
from ppokit.threads import blas_thread_limit


def evaluate_policy(agent, env: EnvSource | None = None, episodes: int = 20, deterministic: bool = True, seed: int | None = None,
                    max_envs: int = 8) -> list[float]:
    """Returns the undiscounted return of each of ``episodes`` episodes.

    Each env copy runs a fixed share of the episodes, so short episodes are not over-counted
    (stopping at the first N finished episodes would favour them). On Atari an episode is a whole
    game (all lives) and its return the game's unclipped score.
    """
    source = env if env is not None else agent.env_source
    whole_games = is_atari_id(source)
    n_envs = max(1, min(episodes, max_envs))
    targets = np.array([episodes // n_envs + (1 if i < episodes % n_envs else 0) for i in range(n_envs)])
    counts = np.zeros(n_envs, dtype=np.int64)
    running = np.zeros(n_envs)
    returns: list[float] = []
    with blas_thread_limit(agent.config.blas_threads):
        envs = make_vector_env(source, n_envs, "sync", agent.config.env_kwargs)
        try:
            obs, _ = envs.reset(seed=agent.config.seed + 10_000 if seed is None else seed)
            while (counts < targets).any():
                actions = agent.predict(obs, deterministic=deterministic)
                obs, rewards, terminated, truncated, infos = envs.step(actions)
                running += rewards
                if whole_games:  # Atari: a game's real score, not a life's clipped rewards
                    ended = [(i, score) for i, score, _ in finished_games(infos)]
                else:
                    ended = [(i, float(running[i])) for i in np.flatnonzero(terminated | truncated)]
                for i, score in ended:
                    if counts[i] < targets[i]:
                        returns.append(score)
                        counts[i] += 1
                running[terminated | truncated] = 0.0
        finally:
            envs.close()
    return returns
