"""The actor-critic protocol every ppokit policy follows (``ppokit.gym.build`` picks and builds one for a config).

Two implementations:
- ``ppokit.gym.policies.numpy_policy.Policy``: the MLP over flat observations as numpy arrays in one flat buffer.
  Acting costs microseconds; the ``numpy`` engine (hand-written gradients) or the ``torch`` engine
  (autograd over the same buffer) trains it.
- ``ppokit.gym.policies.torch_policy.TorchPolicy``: any ``torch.nn.Module`` that maps a batch of observations
  to (distribution parameters, values): the MLP, the Nature CNN for images, or a user's module.
  Only the ``torch`` engine trains it.

What the rollout, the update, evaluation and saving use (batched everywhere):

- ``prepare(raw_obs, update_stats=False)``: env observations -> the array the network takes
  (normalized float32, a Dict's keys packed in one row, or uint8 frames kept as they are);
  ``obs_shape`` / ``obs_dtype`` describe one of them, so the rollout stores them without conversion.
- ``act(obs, rng, deterministic=False, action_mask=None, state=None)``: (actions, next state),
  sampled with ``rng`` or the distribution's mode, never an invalid action of ``action_mask``.
- ``recurrent``, ``state_size``, ``initial_state(n)``: memory, one float32 row per env copy (zeros at
  an episode's start; 0 columns and a next state of None without memory).
- ``value(obs, state=None)``: V(obs).
- ``evaluate_actions(obs, actions, **inputs)``: (log-probs, entropies, values) of a minibatch, with
  its ``POLICY_INPUTS``: the masks the actions were taken under; for a recurrent policy, whole
  sequences with each step's episode start and stored state.
- ``actions_to_env(actions)``: the env's format (Box actions clipped to the bounds).
- ``reward_scaler(rewards, dones)``: reward scaling (the identity when disabled).
- ``is_finite(raw_obs)``, ``weights_finite()``: checks for non-finite inputs and weights.
- ``state_dict()`` / ``load_state_dict(arrays)``: weights and normalizer statistics as numpy arrays.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np


class ActorCritic(Protocol):
    observation_space: gym.Space
    action_space: gym.Space
    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype

    def prepare(self, raw_obs, update_stats: bool = False) -> np.ndarray: ...

    recurrent: bool
    state_size: int

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False, action_mask: np.ndarray | None = None,
            state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]: ...

    def initial_state(self, n: int) -> np.ndarray: ...

    def value(self, obs: np.ndarray, state: np.ndarray | None = None) -> np.ndarray: ...

    def evaluate_actions(self, obs: Any, actions: Any, **inputs: Any) -> tuple[Any, Any, Any]: ...

    def actions_to_env(self, actions: np.ndarray) -> np.ndarray: ...

    def reward_scaler(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray: ...

    def is_finite(self, raw_obs) -> bool: ...

    def weights_finite(self) -> bool: ...

    def state_dict(self) -> dict[str, np.ndarray]: ...

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None: ...


# what a minibatch may carry besides observations and actions, passed to evaluate_actions by name
POLICY_INPUTS = ("action_masks", "episode_starts", "states")
