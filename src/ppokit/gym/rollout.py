"""Collects one rollout of n_steps from a vector env into preallocated time-major buffers."""

from __future__ import annotations

import numpy as np
import torch

from ppokit.core import RolloutBatch, next_values_from
from ppokit.errors import EnvError
from ppokit.gym.policy import ActorCritic


class RolloutCollector:
    """Steps the envs with the current policy and records what GAE and the update need.

    Truncated episodes (time limits) are bootstrapped: V(final observation) is stored for that step
    and used as its next value, while the episode still counts as done for cutting the GAE trace.
    """

    def __init__(self, envs, policy: ActorCritic, n_steps: int, env_name: str, bootstrap_truncated: bool = True):
        self.envs = envs
        self.policy = policy
        self.env_name = env_name
        self.bootstrap_truncated = bootstrap_truncated
        n_envs = envs.num_envs
        self.n_steps, self.n_envs = n_steps, n_envs
        dist = policy.dist
        shape = (n_steps, n_envs)
        self.obs = torch.zeros(*shape, policy.encoder.size)
        self.actions = torch.zeros(*shape, *dist.action_shape, dtype=dist.action_dtype)
        self.logprobs = torch.zeros(shape)
        self.values = torch.zeros(shape)
        self.rewards = torch.zeros(shape)
        self.terminated = torch.zeros(shape, dtype=torch.bool)
        self.dones = torch.zeros(shape, dtype=torch.bool)
        self.truncated = torch.zeros(shape, dtype=torch.bool)
        self.truncated_values = torch.zeros(shape)
        self.next_raw_obs = None
        self.episode_returns = np.zeros(n_envs)
        self.episode_lengths = np.zeros(n_envs, dtype=np.int64)
        self.global_step = 0

    def reset(self, seed: int | None) -> None:
        obs, _ = self.envs.reset(seed=seed)
        if seed is not None:
            self.envs.action_space.seed(seed)
        self._check_obs(obs, "reset()")
        self.next_raw_obs = obs
        self.episode_returns[:] = 0.0
        self.episode_lengths[:] = 0

    def collect(self) -> tuple[RolloutBatch, list[tuple[float, int]]]:
        """Run n_steps in every env; return the rollout and the (return, length) of finished episodes."""
        policy = self.policy
        finished: list[tuple[float, int]] = []
        self.truncated.zero_()
        for t in range(self.n_steps):
            obs = policy.prepare(self.next_raw_obs, update_stats=True)
            actions = policy.sample(obs)
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
            self.episode_returns += rewards
            self.episode_lengths += 1
            if dones.any():
                for i in np.flatnonzero(dones):
                    finished.append((float(self.episode_returns[i]), int(self.episode_lengths[i])))
                self.episode_returns[dones] = 0.0
                self.episode_lengths[dones] = 0
                if self.bootstrap_truncated:
                    self._bootstrap(t, truncated & ~terminated, infos)

            dones_t = torch.from_numpy(dones)
            self.rewards[t] = policy.reward_scaler(torch.from_numpy(np.asarray(rewards, dtype=np.float32)), dones_t)
            self.terminated[t] = torch.from_numpy(terminated)
            self.dones[t] = dones_t
            self.next_raw_obs = next_obs
            self.global_step += self.n_envs

        steps = self.n_steps * self.n_envs
        logprobs, values = policy.score(self.obs.reshape(steps, -1), self.actions.reshape(steps, *self.actions.shape[2:]))
        self.logprobs.copy_(logprobs.reshape(self.n_steps, self.n_envs))
        self.values.copy_(values.reshape(self.n_steps, self.n_envs))
        last_value = policy.value(policy.prepare(self.next_raw_obs))
        next_values = torch.where(self.truncated, self.truncated_values, next_values_from(self.values, last_value))
        # Without bootstrapping, a time-limit cut is treated as if the episode had really ended.
        terminated = self.terminated if self.bootstrap_truncated else self.dones
        batch = RolloutBatch(
            {
                "obs": self.obs,
                "actions": self.actions,
                "logprobs": self.logprobs,
                "values": self.values,
                "rewards": self.rewards,
                "next_values": next_values,
                "terminated": terminated,
                "dones": self.dones,
            }
        )
        return batch, finished

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

    def _bootstrap(self, t: int, truncated_only: np.ndarray, infos: dict) -> None:
        indices = np.flatnonzero(truncated_only)
        if len(indices) == 0:
            return
        final_obs = np.stack([infos["final_obs"][i] for i in indices])
        self._check_obs(final_obs, "step() (final observation)")
        values = self.policy.value(self.policy.prepare(final_obs))
        index = torch.from_numpy(indices)
        self.truncated_values[t, index] = values
        self.truncated[t, index] = True

    def _check_obs(self, obs, where: str) -> None:
        if self.policy.encoder.is_finite(obs):
            return
        flat = np.asarray(obs).reshape(len(obs), -1)
        bad = int(np.flatnonzero(~np.isfinite(flat).all(axis=1))[0])
        raise EnvError(
            f"environment {self.env_name!r} (copy {bad}) returned a non-finite observation from {where} "
            f"at global step {self.global_step}: {flat[bad].tolist()}; expected finite values"
        )
