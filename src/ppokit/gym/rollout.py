"""Collects one rollout of n_steps from a vector env into preallocated time-major numpy buffers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ppokit.core.batch import RolloutBatch
from ppokit.errors import EnvError
from ppokit.gym.envs.action_masks import ActionMaskReader
from ppokit.gym.envs.atari import finished_games
from ppokit.gym.envs.spaces import stack_observations, take_rows
from ppokit.gym.policies.protocol import ActorCritic


class RolloutCollector:
    """Steps the envs with the current policy and records what GAE and the update need.

    Truncated episodes (time limits) are bootstrapped: V(final observation) is stored for that step
    and used as its next value, while the episode still counts as done for cutting the GAE trace.

    Both of Gymnasium's autoreset modes are handled. SAME_STEP envs return the next episode's first
    observation at once and the final one in ``infos["final_obs"]``. NEXT_STEP envs (the numpy
    vectorized classic-control envs, envpool) return the final observation and reset on the
    following call, ignoring its action: that step is recorded with mask 0 and takes no part in
    the update, the statistics or the step count.

    Action masks (``ppokit.gym.envs.action_masks``), when the env gives them and ``action_masks`` allows,
    are read after every reset and step, passed to the policy and stored with each step. A recurrent
    policy's memory is carried from step to step (and from one rollout to the next), zeroed where an
    episode starts; each step's state and episode start are stored for the update.
    """

    def __init__(self, envs, policy: ActorCritic, n_steps: int, env_name: str, rng: np.random.Generator, bootstrap_truncated: bool = True,
                 whole_games: bool = False, action_masks: str = "auto"):
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
        self.mask_setting = action_masks
        self.mask_reader: ActionMaskReader | None = None
        self.action_masks: np.ndarray | None = None  # allocated once the first reset shows whether the env gives masks
        self.next_action_mask: np.ndarray | None = None
        self.recurrent = bool(getattr(policy, "recurrent", False))
        if self.recurrent:
            self.states = np.zeros((*shape, policy.state_size), dtype=np.float32)
            self.episode_starts = np.zeros(shape, dtype=np.float32)
        self.state = policy.initial_state(n_envs)
        self.next_starts = np.ones(n_envs, dtype=bool)  # whether the next observation begins an episode
        self.next_raw_obs = None
        self.resetting = np.zeros(n_envs, dtype=bool)  # NEXT_STEP envs whose next step is a reset
        self.episode_returns = np.zeros(n_envs)
        self.episode_lengths = np.zeros(n_envs, dtype=np.int64)
        self.global_step = 0

    def reset(self, seed: int | None) -> None:
        obs, infos = self.envs.reset(seed=seed)
        if seed is not None:
            self.envs.action_space.seed(seed)
        self._check_obs(obs, "reset()")
        self.mask_reader = ActionMaskReader.for_env(self.mask_setting, self.envs, self.envs.single_observation_space, infos, self.policy.dist,
                                                    self.envs.single_action_space, self.env_name)
        if self.mask_reader is not None:
            if self.action_masks is None:
                self.action_masks = np.ones((self.n_steps, self.n_envs, self.policy.dist.param_size), dtype=bool)
            self.next_action_mask = self.mask_reader.read(self.envs, obs, infos, self.global_step)
        self.next_raw_obs = obs
        self.state = self.policy.initial_state(self.n_envs)
        self.next_starts[:] = True
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
            if self.recurrent:  # a new episode starts from an empty memory
                self.state[self.next_starts] = 0.0
                self.states[t] = self.state
                self.episode_starts[t] = self.next_starts
            if self.mask_reader is not None:
                self.action_masks[t] = self.next_action_mask
            actions, next_state = policy.act(obs, self.rng, action_mask=self.next_action_mask, state=self.state)
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
            if self.recurrent:  # the next observation begins an episode: after a done (SAME_STEP), or after a reset step (NEXT_STEP)
                self.next_starts = self.resetting.copy() if self.next_step_reset else dones.copy()
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
                    self._bootstrap(t, truncated & ~terminated, next_obs, infos, next_state)
            if self.next_step_reset:
                self.resetting = dones
            if self.mask_reader is not None:  # (a copy about to reset ignores its action: its mask may be empty)
                ignore = self.resetting if self.next_step_reset else None
                self.next_action_mask = self.mask_reader.read(self.envs, next_obs, infos, self.global_step + real, ignore)
            self.state = next_state

            self.rewards[t] = policy.reward_scaler(rewards, dones)
            self.terminated[t] = terminated
            self.dones[t] = dones
            self.next_raw_obs = next_obs
            self.global_step += real

        if self.recurrent:
            self.state[self.next_starts] = 0.0
        last_value = policy.value(policy.prepare(self.next_raw_obs), self.state)
        # Without bootstrapping, a time-limit cut is treated as if the episode had really ended.
        terminated = self.terminated if self.bootstrap_truncated else self.dones
        fields = {
            "obs": self.obs,
            "actions": self.actions,
            "rewards": self.rewards,
            "terminated": terminated,
            "dones": self.dones,
            "truncated": self.truncated,
            "truncated_values": self.truncated_values,
        }
        if self.mask_reader is not None:
            fields["action_masks"] = self.action_masks
        if self.recurrent:
            fields["episode_starts"], fields["states"] = self.episode_starts, self.states
        batch = RolloutBatch(fields, mask=self.mask if self.next_step_reset else None)
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

    def _bootstrap(self, t: int, truncated_only: np.ndarray, next_obs, infos: dict, next_state) -> None:
        indices = np.flatnonzero(truncated_only)
        if len(indices) == 0:
            return
        if self.next_step_reset:
            final_obs = take_rows(next_obs, indices)
        else:
            final_obs = stack_observations([infos["final_obs"][i] for i in indices])
        self._check_obs(final_obs, "step() (final observation)")
        # a recurrent policy values the final observation with the memory of the episode it ends
        state = next_state[indices] if next_state is not None else None
        self.truncated_values[t, indices] = self.policy.value(self.policy.prepare(final_obs), state)
        self.truncated[t, indices] = True

    def _check_obs(self, obs, where: str) -> None:
        if self.policy.is_finite(obs):
            return
        flat = self.policy.encoder(obs) if getattr(self.policy, "encoder", None) is not None else np.asarray(obs).reshape(len(obs), -1)
        bad = int(np.flatnonzero(~np.isfinite(flat).all(axis=1))[0])
        raise EnvError(
            f"environment {self.env_name!r} (copy {bad}) returned a non-finite observation from {where} "
            f"at global step {self.global_step}: {flat[bad].tolist()}; expected finite values"
        )


def sequence_order(rng: np.random.Generator, num_steps: int, num_envs: int, length: int | None = None) -> np.ndarray:
    """A random order of the chunks of ``length`` consecutive steps (default: whole rollouts) of each env copy, for a recurrent
    policy's update: the sample indices of the time-major rollout, chunk-major (a chunk's steps in a row; ``ppokit.gym.policies.recurrent``)."""
    length = length or num_steps
    per_env = num_steps // length
    chunks = rng.permutation(num_envs * per_env)  # chunk c: env c % num_envs, steps (c // num_envs) * length ...
    envs, starts = chunks % num_envs, (chunks // num_envs) * length
    return ((starts[:, None] + np.arange(length)[None, :]) * num_envs + envs[:, None]).reshape(-1)
