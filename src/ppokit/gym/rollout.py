"""Collects one rollout of n_steps from a vector env into preallocated time-major numpy buffers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ppokit.core.batch import RolloutBatch
from ppokit.errors import EnvError
from ppokit.gym.actor_critic import ActorCritic
from ppokit.gym.atari import finished_games


class RolloutCollector:
    """Steps the envs with the current policy and records what GAE and the update need.

    Truncated episodes (time limits) are bootstrapped: V(final observation) is stored for that step
    and used as its next value, while the episode still counts as done for cutting the GAE trace.

    Both of Gymnasium's autoreset modes are handled. SAME_STEP envs return the next episode's first
    observation at once and the final one in ``infos["final_obs"]``. NEXT_STEP envs (the numpy
    vectorized classic-control envs, envpool) return the final observation and reset on the
    following call, ignoring its action: that step is recorded with mask 0 and takes no part in
    the update, the statistics or the step count.
    """

    def __init__(self, envs, policy: ActorCritic, n_steps: int, env_name: str, rng: np.random.Generator, bootstrap_truncated: bool = True,
                 whole_games: bool = False):
        self.envs = envs
        self.policy = policy
        self.env_name = env_name
        self.rng = rng
        self.bootstrap_truncated = bootstrap_truncated
        # Atari: the finished episodes reported are whole games with their real score, not lives with clipped rewards
        self.whole_games = whole_games
        self.next_step_reset = envs.metadata.get("autoreset_mode") == gym.vector.AutoresetMode.NEXT_STEP
        n_envs = envs.num_envs
        self.n_steps, self.n_envs = n_steps, n_envs
        dist = policy.dist
        shape = (n_steps, n_envs)
        self.obs = np.zeros((*shape, *policy.obs_shape), dtype=policy.obs_dtype)
        self.actions = np.zeros((*shape, *dist.action_shape), dtype=dist.action_dtype)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.dones = np.zeros(shape, dtype=bool)
        self.truncated = np.zeros(shape, dtype=bool)
        self.truncated_values = np.zeros(shape, dtype=np.float32)
        self.mask = np.ones(shape, dtype=np.float32)
        self.next_raw_obs = None
        self.resetting = np.zeros(n_envs, dtype=bool)  # NEXT_STEP envs whose next step is a reset
        self.episode_returns = np.zeros(n_envs)
        self.episode_lengths = np.zeros(n_envs, dtype=np.int64)
        self.global_step = 0

    def reset(self, seed: int | None) -> None:
        obs, _ = self.envs.reset(seed=seed)
        if seed is not None:
            self.envs.action_space.seed(seed)
        self._check_obs(obs, "reset()")
        self.next_raw_obs = obs
        self.resetting[:] = False
        self.episode_returns[:] = 0.0
        self.episode_lengths[:] = 0

    def collect(self) -> tuple[RolloutBatch, np.ndarray, list[tuple[float, int]]]:
        """Run n_steps in every env.

        Returns the rollout (obs, actions, rewards, terminated, dones, next_values still missing the
        on-policy values), V of the observation after the last step, and the (return, length) of
        every episode that finished.
        """
        policy = self.policy
        finished: list[tuple[float, int]] = []
        self.truncated[:] = False
        self.mask[:] = 1.0
        for t in range(self.n_steps):
            obs = policy.prepare(self.next_raw_obs, update_stats=True)
            actions = policy.act(obs, self.rng)
            self.obs[t] = obs
            self.actions[t] = actions

            next_obs, rewards, terminated, truncated, infos = self._step(policy.actions_to_env(actions))
            self._check_obs(next_obs, "step()")
            if not np.isfinite(rewards).all():
                bad = int(np.flatnonzero(~np.isfinite(rewards))[0])
                raise EnvError(
                    f"environment {self.env_name!r} (copy {bad}) returned a non-finite reward {rewards[bad]} "
                    f"at global step {self.global_step}; expected a finite number"
                )
            dones = terminated | truncated
            real = self.n_envs
            if self.next_step_reset and self.resetting.any():
                self.mask[t, self.resetting] = 0.0
                real -= int(self.resetting.sum())
                self.episode_lengths[self.resetting] = -1  # the reset step is not part of an episode
            self.episode_returns += rewards
            self.episode_lengths += 1
            if self.whole_games:
                finished.extend((score, length) for _, score, length in finished_games(infos))
            if dones.any():
                if not self.whole_games:
                    finished.extend((float(self.episode_returns[i]), int(self.episode_lengths[i])) for i in np.flatnonzero(dones))
                self.episode_returns[dones] = 0.0
                self.episode_lengths[dones] = 0
                if self.bootstrap_truncated:
                    self._bootstrap(t, truncated & ~terminated, next_obs, infos)
            if self.next_step_reset:
                self.resetting = dones

            self.rewards[t] = policy.reward_scaler(rewards, dones)
            self.terminated[t] = terminated
            self.dones[t] = dones
            self.next_raw_obs = next_obs
            self.global_step += real

        last_value = policy.value(policy.prepare(self.next_raw_obs))
        # Without bootstrapping, a time-limit cut is treated as if the episode had really ended.
        terminated = self.terminated if self.bootstrap_truncated else self.dones
        batch = RolloutBatch(
            {
                "obs": self.obs,
                "actions": self.actions,
                "rewards": self.rewards,
                "terminated": terminated,
                "dones": self.dones,
                "truncated": self.truncated,
                "truncated_values": self.truncated_values,
            },
            mask=self.mask if self.next_step_reset else None,
        )
        return batch, last_value, finished

    def _step(self, env_actions):
        try:
            return self.envs.step(env_actions)
        except EnvError:
            raise
        except Exception as exc:
            raise EnvError(
                f"environment {self.env_name!r} raised {type(exc).__name__} in step() "
                f"at global step {self.global_step}: {exc}"
            ) from exc

    def _bootstrap(self, t: int, truncated_only: np.ndarray, next_obs, infos: dict) -> None:
        indices = np.flatnonzero(truncated_only)
        if len(indices) == 0:
            return
        if self.next_step_reset:
            final_obs = np.asarray(next_obs)[indices]
        else:
            final_obs = np.stack([infos["final_obs"][i] for i in indices])
        self._check_obs(final_obs, "step() (final observation)")
        self.truncated_values[t, indices] = self.policy.value(self.policy.prepare(final_obs))
        self.truncated[t, indices] = True

    def _check_obs(self, obs, where: str) -> None:
        if self.policy.is_finite(obs):
            return
        flat = np.asarray(obs).reshape(len(obs), -1)
        bad = int(np.flatnonzero(~np.isfinite(flat).all(axis=1))[0])
        raise EnvError(
            f"environment {self.env_name!r} (copy {bad}) returned a non-finite observation from {where} "
            f"at global step {self.global_step}: {flat[bad].tolist()}; expected finite values"
        )
