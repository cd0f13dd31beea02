"""The numpy MLP actor-critic (``ppokit.gym.actor_critic``'s interface): observation encoding and normalization, sampling, values.

Acting runs in numpy whatever engine trains: a forward pass on a handful of observations costs a few
microseconds this way, against tens in a framework. The weights live in a PolicyParameters store
shared with the training engine.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ppokit.core.running_stats import RunningMeanStd
from ppokit.gym.config import PPOConfig
from ppokit.gym.distributions import DiagGaussian, make_distribution
from ppokit.gym.normalize import ObservationNormalizer, RewardScaler
from ppokit.gym.numpy_mlp import NumpyMLP
from ppokit.gym.params import PolicyParameters
from ppokit.gym.spaces import ObservationEncoder


class Policy:
    """Separate actor and critic MLPs; continuous actions add a state-independent log-std parameter."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: PPOConfig):
        self.observation_space = observation_space
        self.action_space = action_space
        self.encoder = ObservationEncoder(observation_space)
        self.dist = make_distribution(action_space)
        self.continuous = isinstance(self.dist, DiagGaussian)
        self.params = PolicyParameters(self.encoder.size, list(config.hidden_sizes), self.dist.param_size, self.continuous)
        self.actor = NumpyMLP(self.params.layers("actor"), config.activation)
        self.critic = NumpyMLP(self.params.layers("critic"), config.activation)
        self.log_std = self.params.views.get("log_std")
        self.obs_normalizer = ObservationNormalizer(RunningMeanStd(self.params.stats, "obs_normalizer.stats"), config.normalize_obs, config.obs_clip)
        self.reward_scaler = RewardScaler(RunningMeanStd(self.params.stats, "reward_scaler.stats"), config.normalize_reward, config.gamma, config.reward_clip)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return (self.encoder.size,)

    obs_dtype = np.dtype(np.float32)

    def prepare(self, raw_obs, update_stats: bool = False) -> np.ndarray:
        """Raw env observations -> the normalized float32 [batch, size] array the networks take."""
        return self.obs_normalizer(self.encoder(raw_obs), update=update_stats)

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.dist.sample(self.actor.forward(obs), rng, self.log_std)

    def mode(self, obs: np.ndarray) -> np.ndarray:
        return self.dist.mode(self.actor.forward(obs))

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False) -> np.ndarray:
        return self.mode(obs) if deterministic else self.sample(obs, rng)

    def evaluate_actions(self, obs: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log-probs, entropies, values), without gradients (the numpy engine computes its own)."""
        logprob, entropy, _ = self.dist.log_prob_entropy(self.actor.forward(obs), actions, self.log_std)
        return logprob, entropy, self.value(obs)

    def is_finite(self, raw_obs) -> bool:
        return self.encoder.is_finite(raw_obs)

    def weights_finite(self) -> bool:
        return bool(np.isfinite(self.params.flat).all())

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.critic.forward(obs)[:, 0]

    def actions_to_env(self, actions: np.ndarray) -> np.ndarray:
        return self.dist.to_env(actions)

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.params.state_dict()

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        self.params.load_state_dict(arrays)
