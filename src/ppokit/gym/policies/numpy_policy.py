"""The numpy MLP actor-critic (``ppokit.gym.policies.protocol``'s interface): observation encoding and normalization, sampling, values.

Acting runs in numpy whatever engine trains: a forward pass on a handful of observations costs a few
microseconds this way, against tens in a framework. The weights live in a PolicyParameters store
shared with the training engine.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ppokit.core.running_stats import RunningMeanStd
from ppokit.gym.config import PPOConfig
from ppokit.gym.envs.spaces import ObservationEncoder
from ppokit.gym.policies.distributions import DiagGaussian, make_distribution, mask_logits
from ppokit.gym.policies.normalize import ObservationNormalizer, RewardScaler
from ppokit.gym.policies.numpy_mlp import NumpyMLP
from ppokit.gym.policies.numpy_params import PolicyParameters


class Policy:
    """Separate actor and critic MLPs; continuous actions add a state-independent log-std parameter."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: PPOConfig):
        self.observation_space = observation_space
        self.action_space = action_space
        self.encoder = ObservationEncoder(observation_space)
        self.dist = make_distribution(action_space)
        self.continuous = isinstance(self.dist, DiagGaussian)
        columns = self.encoder.normalized_columns
        self.params = PolicyParameters(self.encoder.size, list(config.hidden_sizes), self.dist.param_size, self.continuous,
                                       stats_size=None if columns is None else len(columns))
        self.actor = NumpyMLP(self.params.layers("actor"), config.activation)
        self.critic = NumpyMLP(self.params.layers("critic"), config.activation)
        self.log_std = self.params.views.get("log_std")
        self.obs_normalizer = ObservationNormalizer(RunningMeanStd(self.params.stats, "obs_normalizer.stats"), config.normalize_obs, config.obs_clip,
                                                    columns=columns)
        self.reward_scaler = RewardScaler(RunningMeanStd(self.params.stats, "reward_scaler.stats"), config.normalize_reward, config.gamma, config.reward_clip)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return (self.encoder.size,)

    obs_dtype = np.dtype(np.float32)
    recurrent = False  # no memory: ``state`` arguments are None
    state_size = 0

    def prepare(self, raw_obs, update_stats: bool = False) -> np.ndarray:
        """Raw env observations -> the normalized float32 [batch, size] array the networks take."""
        return self.obs_normalizer(self.encoder(raw_obs), update=update_stats)

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False, action_mask: np.ndarray | None = None,
            state=None) -> tuple[np.ndarray, None]:
        """(actions, None: no memory); invalid actions (``action_mask`` False) are never chosen."""
        params = mask_logits(self.actor.forward(obs), action_mask)
        return (self.dist.mode(params) if deterministic else self.dist.sample(params, rng, self.log_std)), None

    def evaluate_actions(self, obs: np.ndarray, actions: np.ndarray, action_masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log-probs, entropies, values), without gradients (the numpy engine computes its own)."""
        logprob, entropy, _ = self.dist.log_prob_entropy(mask_logits(self.actor.forward(obs), action_masks), actions, self.log_std)
        return logprob, entropy, self.value(obs)

    def is_finite(self, raw_obs) -> bool:
        return self.encoder.is_finite(raw_obs)

    def weights_finite(self) -> bool:
        return bool(np.isfinite(self.params.flat).all())

    def initial_state(self, n: int) -> np.ndarray:
        return np.zeros((n, 0), dtype=np.float32)

    def value(self, obs: np.ndarray, state=None) -> np.ndarray:
        return self.critic.forward(obs)[:, 0]

    def actions_to_env(self, actions: np.ndarray) -> np.ndarray:
        return self.dist.to_env(actions)

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.params.state_dict()

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        self.params.load_state_dict(arrays)
