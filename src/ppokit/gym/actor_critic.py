"""The actor-critic interface every ppokit policy follows, and the choice of policy and engine for a config.

Two implementations:
- ``ppokit.gym.policy.Policy``: the MLP over flat observations as numpy arrays in one flat buffer.
  Acting costs microseconds; the ``numpy`` engine (hand-written gradients) or the ``torch`` engine
  (autograd over the same buffer) trains it.
- ``ppokit.gym.torch_policy.TorchPolicy``: any ``torch.nn.Module`` that maps a batch of observations
  to (distribution parameters, values): the MLP, the Nature CNN for images, or a user's module.
  Only the ``torch`` engine trains it.

What the rollout, the update, evaluation and saving use (batched everywhere):

- ``prepare(raw_obs, update_stats=False)``: env observations -> the array the network takes
  (normalized float32, or uint8 frames kept as they are); ``obs_shape`` / ``obs_dtype`` describe
  one of them, so the rollout stores them without conversion.
- ``act(obs, rng, deterministic=False)``: actions, sampled with ``rng`` or the distribution's mode.
- ``value(obs)``: V(obs).
- ``evaluate_actions(obs, actions)``: (log-probs, entropies, values) of a minibatch.
- ``actions_to_env(actions)``: the env's format (Box actions clipped to the bounds).
- ``reward_scaler(rewards, dones)``: reward scaling (the identity when disabled).
- ``is_finite(raw_obs)``, ``weights_finite()``: checks for non-finite inputs and weights.
- ``state_dict()`` / ``load_state_dict(arrays)``: weights and normalizer statistics as numpy arrays.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from ppokit.errors import ConfigError


class ActorCritic(Protocol):
    observation_space: gym.Space
    action_space: gym.Space
    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype

    def prepare(self, raw_obs, update_stats: bool = False) -> np.ndarray: ...

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False) -> np.ndarray: ...

    def value(self, obs: np.ndarray) -> np.ndarray: ...

    def evaluate_actions(self, obs: Any, actions: Any) -> tuple[Any, Any, Any]: ...

    def actions_to_env(self, actions: np.ndarray) -> np.ndarray: ...

    def reward_scaler(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray: ...

    def is_finite(self, raw_obs) -> bool: ...

    def weights_finite(self) -> bool: ...

    def state_dict(self) -> dict[str, np.ndarray]: ...

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None: ...


def is_image_space(space: gym.Space) -> bool:
    """A uint8 Box of rank 3 (HxWxC or CxHxW): frames, for the CNN."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def resolve_policy_and_engine(config, observation_space: gym.Space, custom_module: bool) -> tuple[str, str]:
    """(policy kind, engine) for a config: 'auto' picks the CNN for images and numpy for an MLP over flat observations."""
    policy = config.policy
    if custom_module:
        policy = "custom"
    elif policy == "auto":
        policy = "cnn" if is_image_space(observation_space) else "mlp"
    if policy == "cnn" and not is_image_space(observation_space):
        raise ConfigError(f"policy 'cnn' needs image observations (a uint8 Box of shape HxWxC or CxHxW); this env has {observation_space}")
    engine = config.engine
    if engine == "auto":
        engine = "numpy" if policy == "mlp" else "torch"
    if engine == "numpy" and policy != "mlp":
        raise ConfigError(f"engine 'numpy' trains only the MLP policy; the {policy!r} policy needs engine 'torch' (or 'auto')")
    return policy, engine
