"""Evaluate a policy for an exact number of episodes on a vector env."""

from __future__ import annotations

import numpy as np

from ppokit.gym.envs.action_masks import ActionMaskReader
from ppokit.gym.envs.atari import finished_games
from ppokit.gym.envs.make import EnvSource, describe, make_vector_env, scores_whole_games
from ppokit.threads import blas_thread_limit

# evaluation envs are seeded apart from the training envs: config.seed + this, unless a seed is given
EVAL_SEED_OFFSET = 10_000
# an evaluation episode of an env without a time limit of its own (CliffWalking-v1) ends after this many steps:
# a policy that never reaches a terminal state scores what it collected by then instead of running forever
EVAL_STEP_LIMIT = 10_000


class PolicyDriver:
    """Picks a trained agent's actions in an env (a vector env, or one env with ``vectorized=False``):
    with the env's action masks, and a recurrent policy's memory carried and reset at episode starts."""

    def __init__(self, agent, env, reset_infos: dict, deterministic: bool, vectorized: bool = True):
        self.agent = agent
        self.env = env
        self.deterministic = deterministic
        self.masks = ActionMaskReader.for_env(agent.config.action_masks, env, agent.observation_space, reset_infos, agent.policy.dist,
                                              agent.action_space, describe(agent.env_source), vectorized)
        self.state = None  # a recurrent policy's memory (None: every copy at an episode's start)
        self.steps = 0

    def act(self, obs, infos: dict):
        mask = self.masks.read(self.env, obs, infos, self.steps) if self.masks is not None else None
        actions = self.agent.predict(obs, state=self.state, deterministic=self.deterministic, action_mask=mask)
        if self.agent.policy.recurrent:
            actions, self.state = actions
        self.steps += 1
        return actions

    def episodes_ended(self, ended: np.ndarray) -> None:
        """Forget the memory of the copies whose episode ended (the env has reset them)."""
        if self.state is not None:
            self.state[np.asarray(ended, dtype=bool).reshape(-1)] = 0.0


def evaluate_policy(agent, env: EnvSource | None = None, episodes: int = 20, deterministic: bool = True, seed: int | None = None,
                    max_envs: int = 8) -> list[float]:
    """Returns the undiscounted return of each of ``episodes`` episodes.

    Each env copy runs a fixed share of the episodes, so short episodes are not over-counted
    (stopping at the first N finished episodes would favour them). On Atari an episode is a whole
    game (all lives) and its return the game's unclipped score. An env without a time limit of its own
    ends an episode after EVAL_STEP_LIMIT steps.
    """
    source = env if env is not None else agent.env_source
    n_envs = max(1, min(episodes, max_envs))
    targets = np.array([episodes // n_envs + (1 if i < episodes % n_envs else 0) for i in range(n_envs)])
    counts = np.zeros(n_envs, dtype=np.int64)
    running = np.zeros(n_envs)
    returns: list[float] = []
    with blas_thread_limit(agent.config.blas_threads):
        # the training run's env backend; gymnasium's copies step in this process (a few evaluation copies gain nothing from processes)
        envs = make_vector_env(source, n_envs, "sync", agent.config.env_kwargs, backend=agent.config.env_backend, step_limit=EVAL_STEP_LIMIT)
        whole_games = scores_whole_games(envs)
        try:
            obs, infos = envs.reset(seed=agent.config.seed + EVAL_SEED_OFFSET if seed is None else seed)
            driver = PolicyDriver(agent, envs, infos, deterministic)
            while (counts < targets).any():
                obs, rewards, terminated, truncated, infos = envs.step(driver.act(obs, infos))
                driver.episodes_ended(terminated | truncated)
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
