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
from ppokit.gym.distributions import DiagGaussian, make_distribution, mask_logits
from ppokit.gym.normalize import ObservationNormalizer, RewardScaler, normalizer_statistics
from ppokit.gym.recurrent import RecurrentActorCritic
from ppokit.gym.spaces import ObservationEncoder, is_image_space
from ppokit.gym.torch_engine import log_prob_entropy

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
# the Nature CNN's three convolutions shrink a side by 8/4, 4/2 and 3/1: 36 pixels leave one
NATURE_CNN_MIN_SIDE = 36
CNN_FEATURES = 512


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


def nature_cnn_body(channels: int, height: int, width: int) -> nn.Sequential:
    """Mnih et al. (2015)'s convolutions and 512-unit layer over float frames [B, C, H, W]."""
    if min(height, width) < NATURE_CNN_MIN_SIDE:
        raise ConfigError(f"the Nature CNN needs frames of at least {NATURE_CNN_MIN_SIDE}x{NATURE_CNN_MIN_SIDE} pixels; "
                          f"these are {height}x{width} (resize them, or use policy 'mlp' or a module of your own)")
    gain = math.sqrt(2)
    body = nn.Sequential(
        _orthogonal(nn.Conv2d(channels, 32, 8, stride=4), gain), nn.ReLU(),
        _orthogonal(nn.Conv2d(32, 64, 4, stride=2), gain), nn.ReLU(),
        _orthogonal(nn.Conv2d(64, 64, 3, stride=1), gain), nn.ReLU(),
        nn.Flatten(),
    )
    with torch.no_grad():
        flat_size = body(torch.zeros(1, channels, height, width)).shape[1]
    body.append(_orthogonal(nn.Linear(flat_size, CNN_FEATURES), gain))
    body.append(nn.ReLU())
    return body


def frame_layout(shape: tuple[int, int, int]) -> tuple[bool, int, int, int]:
    """(channels last?, channels, height, width) of a frame shape."""
    last = channels_last(shape)
    return (last, shape[2], shape[0], shape[1]) if last else (last, *shape)


class NatureCNNActorCritic(nn.Module):
    """Mnih et al. (2015)'s network, shared by actor and critic: 3 convolutions, 512 units, two linear heads.

    Takes uint8 frames [B, C, H, W] (or [B, H, W, C] with ``channels_last``) and scales them by 1/255.
    Orthogonal init: gain sqrt(2) in the body, 0.01 on the policy head, 1 on the value head.
    """

    def __init__(self, frame_shape: tuple[int, int, int], channels_last: bool, action_param_size: int):
        super().__init__()
        self.channels_last = channels_last
        channels, height, width = (frame_shape[2], frame_shape[0], frame_shape[1]) if channels_last else frame_shape
        self.body = nature_cnn_body(channels, height, width)
        self.actor = _orthogonal(nn.Linear(CNN_FEATURES, action_param_size), 0.01)
        self.critic = _orthogonal(nn.Linear(CNN_FEATURES, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(scaled_frames(obs, self.channels_last))
        return self.actor(hidden), self.critic(hidden).squeeze(-1)


def scaled_frames(frames: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """0-255 frames (uint8, or their values as floats) -> float [B, C, H, W] in [0, 1]."""
    frames = frames.float() / 255.0
    return frames.permute(0, 3, 1, 2) if channels_last else frames


class FrameFeatures(nn.Module):
    """Frames (uint8, or their 0-255 values as floats) of a given shape -> the Nature CNN's 512 features."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        self.shape = tuple(shape)
        self.channels_last, channels, height, width = frame_layout(self.shape)
        self.body = nature_cnn_body(channels, height, width)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.body(scaled_frames(obs.reshape(-1, *self.shape), self.channels_last))


class MultiInputFeatures(nn.Module):
    """A packed Dict/Tuple row (``ObservationEncoder``) -> one feature vector: the vector, one-hot and binary
    columns as they are (the actor and critic MLPs that follow encode them), each image key through a
    Nature CNN of its own; concatenated."""

    def __init__(self, encoder: ObservationEncoder):
        super().__init__()
        self.image_parts = [part for part in encoder.parts if part.kind == "image"]
        self.images = nn.ModuleList([FrameFeatures(tuple(part.space.shape)) for part in self.image_parts])
        flat = [np.arange(p.offset, p.offset + p.size) for p in encoder.parts if p.kind != "image"]
        columns = torch.from_numpy(np.concatenate(flat) if flat else np.zeros(0, np.int64))
        self.register_buffer("flat_columns", columns, persistent=False)
        self.size = len(columns) + CNN_FEATURES * len(self.image_parts)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = [obs[:, self.flat_columns]] if len(self.flat_columns) else []
        features += [cnn(obs[:, part.columns]) for part, cnn in zip(self.image_parts, self.images)]
        return torch.cat(features, dim=-1)


class FeaturesActorCritic(nn.Module):
    """A feature encoder (``MultiInputFeatures``) followed by separate actor and critic MLPs."""

    def __init__(self, features: nn.Module, feature_size: int, config, action_param_size: int):
        super().__init__()
        self.features = features
        self.heads = MLPActorCritic(feature_size, list(config.hidden_sizes), config.activation, action_param_size, config.ortho_init)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.features(obs))


def channels_last(shape: tuple[int, ...]) -> bool:
    """HxWxC (a few channels last, as renders come) rather than CxHxW (as frame stacks come)."""
    return shape[-1] <= 4 < shape[0]


def build_features(observation_space: gym.Space, encoder: ObservationEncoder | None) -> tuple[nn.Module, int]:
    """The encoder a space calls for, as (module, feature size): the CNN for frames, one encoder per
    Dict key, the identity for flat vectors."""
    if encoder is None:
        return FrameFeatures(tuple(observation_space.shape)), CNN_FEATURES
    if encoder.multi and any(part.kind == "image" for part in encoder.parts):
        features = MultiInputFeatures(encoder)
        return features, features.size
    return nn.Identity(), encoder.size


def build_module(kind: str, observation_space: gym.Space, encoder: ObservationEncoder | None, action_param_size: int, config) -> nn.Module:
    if kind == "cnn":
        return NatureCNNActorCritic(tuple(observation_space.shape), channels_last(observation_space.shape), action_param_size)
    if kind == "lstm":
        features, size = build_features(observation_space, encoder)
        return RecurrentActorCritic(features, size, config, action_param_size)
    if kind == "multi_input":
        features, size = build_features(observation_space, encoder)
        return FeaturesActorCritic(features, size, config, action_param_size)
    return MLPActorCritic(encoder.size, list(config.hidden_sizes), config.activation, action_param_size, config.ortho_init)


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
            self.module = module if module is not None else build_module(kind, observation_space, self.encoder, self.dist.param_size, config)
        self.recurrent = bool(getattr(self.module, "recurrent", False))
        self.state_size = int(self.module.state_size) if self.recurrent else 0
        self.log_std = nn.Parameter(torch.full((self.dist.param_size,), float(config.log_std_init))) if isinstance(self.dist, DiagGaussian) else None
        columns = None if self.image else self.encoder.normalized_columns
        self.stats = normalizer_statistics(1 if self.image else self.encoder.size if columns is None else len(columns))
        obs_stats = RunningMeanStd(self.stats, "obs_normalizer.stats")
        self.obs_normalizer = ObservationNormalizer(obs_stats, config.normalize_obs and not self.image, config.obs_clip, columns=columns)
        self.reward_scaler = RewardScaler(RunningMeanStd(self.stats, "reward_scaler.stats"), config.normalize_reward, config.gamma, config.reward_clip)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.module.parameters()) + ([self.log_std] if self.log_std is not None else [])

    # --- acting (numpy in, numpy out) ---
    def prepare(self, raw_obs, update_stats: bool = False) -> np.ndarray:
        if self.image:
            frames = np.asarray(raw_obs, dtype=np.uint8)
            return frames if frames.ndim == len(self.obs_shape) + 1 else frames.reshape(-1, *self.obs_shape)
        return self.obs_normalizer(self.encoder(raw_obs), update=update_stats)

    def initial_state(self, n: int) -> np.ndarray:
        """The memory of ``n`` copies at an episode's start (zeros; [n, 0] for a policy without memory)."""
        return np.zeros((n, self.state_size), dtype=np.float32)

    @torch.no_grad()
    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False, action_mask: np.ndarray | None = None,
            state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(actions, the next state: None without memory); invalid actions (``action_mask`` False) are never chosen."""
        next_state = None
        if self.recurrent:
            state = self.initial_state(len(obs)) if state is None else state
            params, _, next_state = self.module.step(torch.from_numpy(obs), torch.from_numpy(np.asarray(state, dtype=np.float32)))
            next_state = next_state.numpy()
        else:
            params, _ = self.module(torch.from_numpy(obs))
        params = mask_logits(params.numpy(), action_mask)
        if deterministic:
            return self.dist.mode(params), next_state
        return self.dist.sample(params, rng, None if self.log_std is None else self.log_std.detach().numpy()), next_state

    @torch.no_grad()
    def value(self, obs: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
        if self.recurrent:
            state = self.initial_state(len(obs)) if state is None else state
            return self.module.step(torch.from_numpy(obs), torch.from_numpy(np.asarray(state, dtype=np.float32)))[1].numpy()
        return self.module(torch.from_numpy(obs))[1].numpy()

    def actions_to_env(self, actions: np.ndarray) -> np.ndarray:
        return self.dist.to_env(actions)

    # --- training (torch, with gradients) ---
    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, action_masks: torch.Tensor | None = None,
                         episode_starts: torch.Tensor | None = None, states: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probs, entropies, values) of a minibatch; a recurrent module's minibatch is sequence chunks
        (``ppokit.gym.recurrent``) with each step's episode start and stored state."""
        if self.recurrent:
            params, values = self.module.evaluate_sequences(obs, episode_starts, states)
        else:
            params, values = self.module(obs)
        logprob, entropy = log_prob_entropy(self.dist, params, actions, self.log_std, action_masks)
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
