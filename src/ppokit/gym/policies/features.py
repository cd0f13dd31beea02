"""Features extractors: the first part of a torch policy, from a batch of prepared observations to feature vectors.

Each is registered under a name that the config key ``features_extractor`` picks (and that the saved model's
config.yaml keeps): 'flatten' (the packed vector as it is: the MLP policy), 'nature_cnn' (frames), 'multi_input'
(a Dict or Tuple: one Nature CNN per image key beside the other columns). A new kind is a module with a
``features_size`` attribute, built as ``Class(observation_space, encoder, config)``, and one line:
``register_features("name", Class)``; ``features_extractor=package.module:Class`` imports and registers it by
that spec (from the command line too). Nothing registered under a spec is imported while a saved model loads:
the loader is told the same ``features_extractor=`` to import it.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ppokit.errors import ConfigError
from ppokit.gym.envs.spaces import ObservationEncoder
from ppokit.gym.policies.networks import HIDDEN_GAIN, orthogonal
from ppokit.gym.specs import import_spec

# the Nature CNN's three convolutions shrink a side by 8/4, 4/2 and 3/1: 36 pixels leave one
NATURE_CNN_MIN_SIDE = 36
CNN_FEATURES = 512

FEATURES_EXTRACTORS: dict[str, Callable[..., nn.Module]] = {}


def register_features(name: str, builder: Callable[..., nn.Module]) -> None:
    """Make ``features_extractor: name`` build ``builder(observation_space, encoder, config)`` (a module with ``features_size``)."""
    FEATURES_EXTRACTORS[name] = builder


def build_features(name: str, observation_space: gym.Space, encoder: ObservationEncoder | None, config) -> nn.Module:
    """The features extractor ``name`` for this space; a 'package.module:Class' spec is imported and registered first."""
    if name not in FEATURES_EXTRACTORS and ":" in name:
        register_features(name, import_spec(name, "features_extractor"))
    if name not in FEATURES_EXTRACTORS:
        raise ConfigError(f"features_extractor {name!r} is not registered; expected one of {sorted(FEATURES_EXTRACTORS)} "
                          f"or 'package.module:Class'")
    features = FEATURES_EXTRACTORS[name](observation_space, encoder, config)
    if not isinstance(getattr(features, "features_size", None), int):
        raise ConfigError(f"features_extractor {name!r} built {type(features).__name__}, which has no integer features_size")
    return features


class Flatten(nn.Module):
    """The packed observation row as it is (the MLP policy's input)."""

    def __init__(self, observation_space: gym.Space, encoder: ObservationEncoder, config=None):
        super().__init__()
        self.features_size = encoder.size

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs


def nature_cnn_body(channels: int, height: int, width: int) -> nn.Sequential:
    """Mnih et al. (2015)'s convolutions and 512-unit layer over float frames [B, C, H, W]."""
    if min(height, width) < NATURE_CNN_MIN_SIDE:
        raise ConfigError(f"the Nature CNN needs frames of at least {NATURE_CNN_MIN_SIDE}x{NATURE_CNN_MIN_SIDE} pixels; "
                          f"these are {height}x{width} (resize them, or use policy 'mlp' or a module of your own)")
    body = nn.Sequential(
        orthogonal(nn.Conv2d(channels, 32, 8, stride=4), HIDDEN_GAIN), nn.ReLU(),
        orthogonal(nn.Conv2d(32, 64, 4, stride=2), HIDDEN_GAIN), nn.ReLU(),
        orthogonal(nn.Conv2d(64, 64, 3, stride=1), HIDDEN_GAIN), nn.ReLU(),
        nn.Flatten(),
    )
    with torch.no_grad():
        flat_size = body(torch.zeros(1, channels, height, width)).shape[1]
    body.append(orthogonal(nn.Linear(flat_size, CNN_FEATURES), HIDDEN_GAIN))
    body.append(nn.ReLU())
    return body


def channels_last(shape: tuple[int, ...]) -> bool:
    """HxWxC (a few channels last, as renders come) rather than CxHxW (as frame stacks come)."""
    return shape[-1] <= 4 < shape[0]


def frame_layout(shape: tuple[int, int, int]) -> tuple[bool, int, int, int]:
    """(channels last?, channels, height, width) of a frame shape."""
    last = channels_last(shape)
    return (last, shape[2], shape[0], shape[1]) if last else (last, *shape)


def scaled_frames(frames: torch.Tensor, last: bool) -> torch.Tensor:
    """0-255 frames (uint8, or their values as floats) -> float [B, C, H, W] in [0, 1]."""
    frames = frames.float() / 255.0
    return frames.permute(0, 3, 1, 2) if last else frames


class FrameFeatures(nn.Module):
    """Frames (uint8, or their 0-255 values as floats) of a given shape -> the Nature CNN's 512 features."""

    features_size = CNN_FEATURES

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        self.shape = tuple(shape)
        self.channels_last, channels, height, width = frame_layout(self.shape)
        self.body = nature_cnn_body(channels, height, width)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.body(scaled_frames(obs.reshape(-1, *self.shape), self.channels_last))


def nature_cnn(observation_space: gym.Space, encoder=None, config=None) -> FrameFeatures:
    return FrameFeatures(tuple(observation_space.shape))


class MultiInputFeatures(nn.Module):
    """A packed Dict/Tuple row (``ObservationEncoder``) -> one feature vector: the vector, one-hot and binary
    columns as they are (the heads that follow encode them), each image key through a Nature CNN of its own;
    concatenated."""

    def __init__(self, observation_space: gym.Space, encoder: ObservationEncoder, config=None):
        super().__init__()
        self.image_parts = [part for part in encoder.parts if part.kind == "image"]
        self.images = nn.ModuleList([FrameFeatures(tuple(part.space.shape)) for part in self.image_parts])
        flat = [np.arange(p.offset, p.offset + p.size) for p in encoder.parts if p.kind != "image"]
        columns = torch.from_numpy(np.concatenate(flat) if flat else np.zeros(0, np.int64))
        self.register_buffer("flat_columns", columns, persistent=False)
        self.features_size = len(columns) + CNN_FEATURES * len(self.image_parts)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = [obs[:, self.flat_columns]] if len(self.flat_columns) else []
        features += [cnn(obs[:, part.columns]) for part, cnn in zip(self.image_parts, self.images)]
        return torch.cat(features, dim=-1)


register_features("flatten", Flatten)
register_features("nature_cnn", nature_cnn)
register_features("multi_input", MultiInputFeatures)
