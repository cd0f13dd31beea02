"""MLP actor-critic with its observation normalizer and reward scaler, all in one state dict."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ppokit.config import PPOConfig
from ppokit.gym.distributions import DiagGaussian, make_distribution
from ppokit.gym.normalize import ObservationNormalizer, RewardScaler
from ppokit.gym.spaces import ObservationEncoder

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(in_size: int, hidden_sizes: list[int], out_size: int, activation: str, ortho_init: bool, out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    size = in_size
    for width in hidden_sizes:
        linear = nn.Linear(size, width)
        if ortho_init:
            nn.init.orthogonal_(linear.weight, math.sqrt(2))
            nn.init.zeros_(linear.bias)
        layers += [linear, _ACTIVATIONS[activation]()]
        size = width
    head = nn.Linear(size, out_size)
    if ortho_init:
        nn.init.orthogonal_(head.weight, out_gain)
        nn.init.zeros_(head.bias)
    layers.append(head)
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs; continuous actions add a state-independent log-std parameter."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: PPOConfig):
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space
        self.encoder = ObservationEncoder(observation_space)
        self.dist = make_distribution(action_space)
        self.continuous = isinstance(self.dist, DiagGaussian)
        size = self.encoder.size
        hidden = list(config.hidden_sizes)
        self.actor = mlp(size, hidden, self.dist.param_size, config.activation, config.ortho_init, out_gain=0.01)
        self.critic = mlp(size, hidden, 1, config.activation, config.ortho_init, out_gain=1.0)
        if self.continuous:
            self.log_std = nn.Parameter(torch.full((self.dist.param_size,), float(config.log_std_init)))
        self.obs_normalizer = ObservationNormalizer(size, config.normalize_obs, config.obs_clip)
        self.reward_scaler = RewardScaler(config.normalize_reward, config.gamma, config.reward_clip)

    # --- acting (rollouts and predict) ---
    def prepare(self, raw_obs, update_stats: bool = False) -> torch.Tensor:
        """Raw env observations -> the normalized float tensor the networks take."""
        return self.obs_normalizer(self.encoder(raw_obs), update=update_stats)

    @torch.inference_mode()
    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """Sample actions for normalized observations (actor only: rollouts score them later in one batch)."""
        params = self.actor(obs)
        if self.continuous:
            return self.dist.sample(params, self.log_std)
        return self.dist.sample(params)

    @torch.no_grad()
    def score(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probs, values) of a whole rollout in one forward pass.

        Batched like the update's minibatches, so the update's first ratio is exactly 1 (a batch of one
        row can round differently in the last bit than a batch of many).
        """
        logprob, _, values = self.evaluate(obs, actions)
        return logprob, values

    @torch.inference_mode()
    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    @torch.inference_mode()
    def deterministic_action(self, obs: torch.Tensor) -> torch.Tensor:
        params = self.actor(obs)
        return self.dist.mode(params) if not self.continuous else params

    # --- learning ---
    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor):
        """(log-probs of the given actions, entropies, values), with gradients."""
        params = self.actor(obs)
        if self.continuous:
            logprob, entropy = self.dist.log_prob_entropy(params, self.log_std, actions)
        else:
            logprob, entropy = self.dist.log_prob_entropy(params, actions)
        return logprob, entropy, self.critic(obs).squeeze(-1)

    def actions_to_env(self, actions: torch.Tensor) -> np.ndarray:
        return self.dist.to_env(actions.numpy())
