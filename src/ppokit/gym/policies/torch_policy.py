"""Torch policies: a network built from parts (``build_network``: features extractor, LSTM, heads) or any user module,
behind the actor-critic protocol; trained by the torch engine.

A module maps a batch of prepared observations to ``(distribution parameters [B, P], values [B])``:
logits for Discrete / MultiDiscrete / MultiBinary actions, the mean for Box actions (the
state-independent log-std belongs to ``TorchPolicy``). That is the whole contract for a user module.
Frames stay uint8 in the rollout and are scaled to [0, 1] inside the CNN.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ppokit.core.running_stats import RunningMeanStd
from ppokit.errors import ConfigError
from ppokit.gym.envs.spaces import ObservationEncoder, has_image_part, is_image_space
from ppokit.gym.policies.distributions import DiagGaussian, make_distribution, mask_logits
from ppokit.gym.policies.features import build_features
from ppokit.gym.policies.networks import ActorCriticNetwork
from ppokit.gym.policies.normalize import ObservationNormalizer, RewardScaler, normalizer_statistics
from ppokit.gym.policies.recurrent import RecurrentActorCritic
from ppokit.gym.policies.torch_distributions import log_prob_entropy


def build_network(kind: str, observation_space: gym.Space, encoder: ObservationEncoder | None, action_param_size: int, config) -> nn.Module:
    """The network of a policy kind from its parts: the features extractor (``features_extractor``, or the one the
    space calls for), an LSTM for 'lstm', and the actor and critic heads (one linear layer each after the Nature CNN)."""
    extractor = features_extractor_for(observation_space, config)
    features = build_features(extractor, observation_space, encoder, config)
    heads = [] if kind == "cnn" else list(config.hidden_sizes)
    if kind == "lstm":
        return RecurrentActorCritic(features, features.features_size, config, action_param_size)
    return ActorCriticNetwork(features, features.features_size, heads, config.activation, action_param_size, config.ortho_init)


def features_extractor_for(observation_space: gym.Space, config) -> str:
    """``features_extractor``, or for 'auto' the one the observation space calls for."""
    if config.features_extractor != "auto":
        return config.features_extractor
    if is_image_space(observation_space):
        return "nature_cnn"
    return "multi_input" if has_image_part(observation_space) else "flatten"


def rename_pre_parts_weights(arrays: dict, kind: str) -> dict:
    """Weights saved by format version 1, before networks were built from parts, under today's names: the Nature
    CNN's body moved into its features extractor and its one-layer heads became Sequentials; the heads of
    multi_input and lstm networks left their ``heads`` container."""
    def rename(name: str) -> str:
        if kind == "cnn":
            name = name.replace("module.body.", "module.features.body.")
            for head in ("actor", "critic"):
                for part in ("weight", "bias"):
                    name = name.replace(f"module.{head}.{part}", f"module.{head}.0.{part}")
        return name.replace("module.heads.", "module.")

    return {rename(name): array for name, array in arrays.items()}


class TorchPolicy:
    """The actor-critic interface (``ppokit.gym.policies.protocol``) over a torch module, on the CPU."""

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
            self.module = module if module is not None else build_network(kind, observation_space, self.encoder, self.dist.param_size, config)
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
        (``ppokit.gym.policies.recurrent``) with each step's episode start and stored state."""
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
