"""Actor-critics as torch modules: the MLP, the Nature CNN for frames, or any user module; trained by the torch engine.

A module maps a batch of prepared observations to ``(distribution parameters [B, P], values [B])``:
logits for Discrete / MultiDiscrete / MultiBinary actions, the mean for Box actions (the
state-independent log-std belongs to ``TorchPolicy``). That is the whole contract for a user module.
Frames stay uint8 in the rollout and are scaled to [0, 1] inside the CNN.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ppokit.core.running_stats import RunningMeanStd
from ppokit.errors import ConfigError
from ppokit.gym.actor_critic import is_image_space
from ppokit.gym.distributions import DiagGaussian, make_distribution
from ppokit.gym.normalize import ObservationNormalizer, RewardScaler, normalizer_statistics
from ppokit.gym.spaces import ObservationEncoder
from ppokit.gym.torch_engine import log_prob_entropy

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
# the Nature CNN's three convolutions shrink a side by 8/4, 4/2 and 3/1: 36 pixels leave one
NATURE_CNN_MIN_SIDE = 36


def _orthogonal(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class MLPActorCritic(nn.Module):
    """Separate actor and critic MLPs over flat observations (what the numpy engine trains, as a module)."""

    def __init__(self, obs_size: int, hidden_sizes: list[int], activation: str, action_param_size: int, ortho_init: bool = True):
        super().__init__()

        def mlp(out_size: int, head_gain: float) -> nn.Sequential:
            layers: list[nn.Module] = []
            sizes = [obs_size, *hidden_sizes]
            for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
                layer = nn.Linear(fan_in, fan_out)
                layers += [_orthogonal(layer, math.sqrt(2)) if ortho_init else layer, _ACTIVATIONS[activation]()]
            head = nn.Linear(sizes[-1], out_size)
            layers.append(_orthogonal(head, head_gain) if ortho_init else head)
            return nn.Sequential(*layers)

        self.actor = mlp(action_param_size, 0.01)
        self.critic = mlp(1, 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(obs), self.critic(obs).squeeze(-1)


class NatureCNNActorCritic(nn.Module):
    """Mnih et al. (2015)'s network, shared by actor and critic: 3 convolutions, 512 units, two linear heads.

    Takes uint8 frames [B, C, H, W] (or [B, H, W, C] with ``channels_last``) and scales them by 1/255.
    Orthogonal init: gain sqrt(2) in the body, 0.01 on the policy head, 1 on the value head.
    """

    def __init__(self, frame_shape: tuple[int, int, int], channels_last: bool, action_param_size: int):
        super().__init__()
        self.channels_last = channels_last
        channels, height, width = (frame_shape[2], frame_shape[0], frame_shape[1]) if channels_last else frame_shape
        if min(height, width) < NATURE_CNN_MIN_SIDE:
            raise ConfigError(f"the Nature CNN needs frames of at least {NATURE_CNN_MIN_SIDE}x{NATURE_CNN_MIN_SIDE} pixels; "
                              f"these are {height}x{width} (resize them, or use policy 'mlp' or a module of your own)")
        gain = math.sqrt(2)
        self.body = nn.Sequential(
            _orthogonal(nn.Conv2d(channels, 32, 8, stride=4), gain), nn.ReLU(),
            _orthogonal(nn.Conv2d(32, 64, 4, stride=2), gain), nn.ReLU(),
            _orthogonal(nn.Conv2d(64, 64, 3, stride=1), gain), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat_size = self.body(torch.zeros(1, channels, height, width)).shape[1]
        self.body.append(_orthogonal(nn.Linear(flat_size, 512), gain))
        self.body.append(nn.ReLU())
        self.actor = _orthogonal(nn.Linear(512, action_param_size), 0.01)
        self.critic = _orthogonal(nn.Linear(512, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = obs.float() / 255.0
        if self.channels_last:
            frames = frames.permute(0, 3, 1, 2)
        hidden = self.body(frames)
        return self.actor(hidden), self.critic(hidden).squeeze(-1)


def channels_last(shape: tuple[int, ...]) -> bool:
    """HxWxC (a few channels last, as renders come) rather than CxHxW (as frame stacks come)."""
    return shape[-1] <= 4 < shape[0]


def build_module(kind: str, observation_space: gym.Space, action_param_size: int, config) -> nn.Module:
    if kind == "cnn":
        return NatureCNNActorCritic(tuple(observation_space.shape), channels_last(observation_space.shape), action_param_size)
    return MLPActorCritic(ObservationEncoder(observation_space).size, list(config.hidden_sizes), config.activation, action_param_size, config.ortho_init)


class TorchPolicy:
    """The actor-critic interface (``ppokit.gym.actor_critic``) over a torch module, on the CPU."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config, kind: str, module: nn.Module | None = None,
                 init_seed: int = 0):
        self.observation_space = observation_space
        self.action_space = action_space
        self.kind = kind
        self.dist = make_distribution(action_space)
        self.image = is_image_space(observation_space)
        if self.image and config.normalize_obs:
            raise ConfigError("normalize_obs applies to vector observations; image frames are scaled by 1/255 inside the CNN (set normalize_obs: false)")
        self.encoder = None if self.image else ObservationEncoder(observation_space)
        self.obs_shape = tuple(observation_space.shape) if self.image else (self.encoder.size,)
        self.obs_dtype = np.dtype(np.uint8) if self.image else np.dtype(np.float32)
        # the weights are drawn from the agent's own seed; torch's global random state is left as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.module = module if module is not None else build_module(kind, observation_space, self.dist.param_size, config)
        self.log_std = nn.Parameter(torch.full((self.dist.param_size,), float(config.log_std_init))) if isinstance(self.dist, DiagGaussian) else None
        self.stats = normalizer_statistics(1 if self.image else self.encoder.size)
        obs_stats = RunningMeanStd(self.stats, "obs_normalizer.stats")
        self.obs_normalizer = ObservationNormalizer(obs_stats, config.normalize_obs and not self.image, config.obs_clip)
        self.reward_scaler = RewardScaler(RunningMeanStd(self.stats, "reward_scaler.stats"), config.normalize_reward, config.gamma, config.reward_clip)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.module.parameters()) + ([self.log_std] if self.log_std is not None else [])

    # --- acting (numpy in, numpy out) ---
    def prepare(self, raw_obs, update_stats: bool = False) -> np.ndarray:
        if self.image:
            frames = np.asarray(raw_obs, dtype=np.uint8)
            return frames if frames.ndim == len(self.obs_shape) + 1 else frames.reshape(-1, *self.obs_shape)
        return self.obs_normalizer(self.encoder(raw_obs), update=update_stats)

    @torch.no_grad()
    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False) -> np.ndarray:
        params, _ = self.module(torch.from_numpy(obs))
        params = params.numpy()
        if deterministic:
            return self.dist.mode(params)
        return self.dist.sample(params, rng, None if self.log_std is None else self.log_std.detach().numpy())

    @torch.no_grad()
    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.module(torch.from_numpy(obs))[1].numpy()

    def actions_to_env(self, actions: np.ndarray) -> np.ndarray:
        return self.dist.to_env(actions)

    # --- training (torch, with gradients) ---
    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        params, values = self.module(obs)
        logprob, entropy = log_prob_entropy(self.dist, params, actions, self.log_std)
        return logprob, entropy, values

    # --- checks and state ---
    def is_finite(self, raw_obs) -> bool:
        return True if self.image else self.encoder.is_finite(raw_obs)

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.parameters())

    def state_dict(self) -> dict[str, np.ndarray]:
        arrays = {f"module.{name}": tensor.detach().cpu().numpy().copy() for name, tensor in self.module.state_dict().items()}
        if self.log_std is not None:
            arrays["log_std"] = self.log_std.detach().numpy().copy()
        return arrays | {name: array.copy() for name, array in self.stats.items()}

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        module_state = {name[len("module."):]: torch.from_numpy(np.array(array)) for name, array in arrays.items() if name.startswith("module.")}
        self.module.load_state_dict(module_state)
        with torch.no_grad():
            if self.log_std is not None:
                self.log_std.copy_(torch.from_numpy(np.array(arrays["log_std"])))
        for name, array in self.stats.items():
            array[...] = arrays[name]
