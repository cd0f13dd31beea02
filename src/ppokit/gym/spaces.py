"""Which Gymnasium spaces ppokit supports, how observations become tensors, and spaces as JSON."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from ppokit.errors import UnsupportedSpaceError

SUPPORTED_OBSERVATION_SPACES = "Box, Discrete"
SUPPORTED_ACTION_SPACES = "Discrete, Box, MultiDiscrete, MultiBinary"


def check_observation_space(space: gym.Space) -> None:
    if isinstance(space, gym.spaces.Box):
        return
    if isinstance(space, gym.spaces.Discrete):
        return
    raise UnsupportedSpaceError(
        f"observation space {space} is not supported; ppokit supports {SUPPORTED_OBSERVATION_SPACES} "
        f"observations (flatten other spaces with gymnasium.wrappers.FlattenObservation)"
    )


def check_action_space(space: gym.Space) -> None:
    if isinstance(space, gym.spaces.Box) and not np.all(np.isfinite(space.low) & np.isfinite(space.high)):
        # Unbounded Box actions are fine: nothing is clipped.
        return
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        if isinstance(space, gym.spaces.MultiDiscrete) and space.nvec.ndim != 1:
            raise UnsupportedSpaceError(f"action space {space} is not supported: MultiDiscrete must be 1-D")
        if isinstance(space, gym.spaces.MultiBinary) and len(space.shape) != 1:
            raise UnsupportedSpaceError(f"action space {space} is not supported: MultiBinary must be 1-D")
        return
    raise UnsupportedSpaceError(f"action space {space} is not supported; ppokit supports {SUPPORTED_ACTION_SPACES} actions")


def observation_size(space: gym.Space) -> int:
    """Width of the flat float vector the networks see."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(math.prod(space.shape))


class ObservationEncoder:
    """Turns a batch of raw observations into a float32 array [batch, observation_size]."""

    def __init__(self, space: gym.Space):
        check_observation_space(space)
        self.space = space
        self.size = observation_size(space)
        self._one_hot = isinstance(space, gym.spaces.Discrete)
        self._start = int(getattr(space, "start", 0))
        self._eye = np.eye(self.size, dtype=np.float32) if self._one_hot else None

    def __call__(self, observations) -> np.ndarray:
        array = np.asarray(observations)
        if self._one_hot:
            return self._eye[array.reshape(-1).astype(np.int64) - self._start]
        array = array.reshape(array.shape[0] if array.ndim > len(self.space.shape) else 1, self.size)
        return array if array.dtype == np.float32 else array.astype(np.float32)

    def is_finite(self, observations) -> bool:
        if self._one_hot:
            return True
        return bool(np.isfinite(observations).all())


def space_to_json(space: gym.Space) -> dict:
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": _array_to_json(space.low),
            "high": _array_to_json(space.high),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": list(space.shape)}
    raise UnsupportedSpaceError(f"cannot save space {space}")


def space_from_json(data: dict) -> gym.Space:
    kind = data.get("type")
    if kind == "Box":
        shape = tuple(data["shape"])
        dtype = np.dtype(data["dtype"])
        low, high = _array_from_json(data["low"], shape), _array_from_json(data["high"], shape)
        if np.issubdtype(dtype, np.floating):
            low, high = low.astype(dtype), high.astype(dtype)
        return gym.spaces.Box(low, high, shape, dtype)
    if kind == "Discrete":
        return gym.spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(np.array(data["nvec"]), start=np.array(data.get("start", [0] * len(data["nvec"]))))
    if kind == "MultiBinary":
        return gym.spaces.MultiBinary(data["n"])
    raise UnsupportedSpaceError(f"unknown space type {kind!r} in saved model; expected Box, Discrete, MultiDiscrete or MultiBinary")


def _array_to_json(array: np.ndarray):
    # Strict JSON has no infinity: write it as a string. A constant array is written as one number.
    flat = np.asarray(array, dtype=np.float64).reshape(-1)
    values = [v if math.isfinite(v) else ("inf" if v > 0 else "-inf") for v in flat.tolist()]
    if len(set(map(str, values))) == 1:
        return values[0]
    return values


def _array_from_json(value, shape) -> np.ndarray:
    values = value if isinstance(value, list) else [value] * int(math.prod(shape))
    return np.array([float(v) for v in values], dtype=np.float64).reshape(shape)
