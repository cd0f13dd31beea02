"""Which Gymnasium spaces ppokit supports, how observations become tensors, and spaces as JSON."""

from __future__ import annotations

import math
from collections import OrderedDict

import gymnasium as gym
import numpy as np

from ppokit.errors import UnsupportedSpaceError

SUPPORTED_OBSERVATION_SPACES = "Box, Discrete, MultiBinary, and Dict or Tuple of them"
SUPPORTED_ACTION_SPACES = "Discrete, Box, MultiDiscrete, MultiBinary"
# the key of a Dict observation that carries the valid actions (PettingZoo's and Gymnasium's convention): not a network input
ACTION_MASK_KEY = "action_mask"
_FLAT_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiBinary)


def check_observation_space(space: gym.Space) -> None:
    if isinstance(space, _FLAT_SPACES):
        return
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        for key, part in _named_parts(space):
            if not isinstance(part, _FLAT_SPACES):
                raise UnsupportedSpaceError(
                    f"observation space {space} is not supported: its part {key!r} is {part}; the parts of a Dict or Tuple "
                    f"observation must be Box, Discrete or MultiBinary (nest no further: flatten inner Dicts into the outer one)"
                )
        if not [key for key, _ in _named_parts(space) if key != ACTION_MASK_KEY]:
            raise UnsupportedSpaceError(f"observation space {space} has no part besides {ACTION_MASK_KEY!r} to observe")
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


def is_image_space(space: gym.Space) -> bool:
    """A uint8 Box of rank 3 (HxWxC or CxHxW): frames, for the CNN."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def is_multi_input(space: gym.Space) -> bool:
    return isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple))


def _named_parts(space: gym.Space) -> list[tuple[str, gym.Space]]:
    if isinstance(space, gym.spaces.Dict):
        return list(space.spaces.items())
    return [(str(i), part) for i, part in enumerate(space.spaces)]


def observation_size(space: gym.Space) -> int:
    """Width of the flat float vector the networks see."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if is_multi_input(space):
        return sum(part.size for part in ObservationEncoder(space).parts)
    return int(math.prod(space.shape))


class ObservationPart:
    """One key of a Dict (or Tuple) observation and where it lies in the packed row."""

    def __init__(self, key: str, space: gym.Space, offset: int):
        self.key = key
        self.space = space
        self.offset = offset
        self.kind = ("image" if is_image_space(space) else "one_hot" if isinstance(space, gym.spaces.Discrete)
                     else "binary" if isinstance(space, gym.spaces.MultiBinary) else "vector")
        self.size = int(space.n) if self.kind == "one_hot" else int(math.prod(space.shape))
        self.columns = slice(offset, offset + self.size)


class ObservationEncoder:
    """Turns a batch of raw observations into a float32 array [batch, size].

    Box: flattened. Discrete: one-hot. MultiBinary: 0/1 floats. Dict and Tuple: each key encoded so
    and packed side by side in one row, in the space's key order (an image key as its raw 0-255 pixel
    values, which the policy's CNN reshapes and scales); the ``action_mask`` key is left out. One
    row per step lets the rollout, the update and data-parallel exchanges treat every space alike.
    """

    def __init__(self, space: gym.Space):
        check_observation_space(space)
        self.space = space
        self.multi = is_multi_input(space)
        self._one_hot = isinstance(space, gym.spaces.Discrete)
        self._start = int(getattr(space, "start", 0))
        if self.multi:
            self.parts: list[ObservationPart] = []
            for key, part in _named_parts(space):
                if key != ACTION_MASK_KEY:
                    self.parts.append(ObservationPart(key, part, sum(p.size for p in self.parts)))
            self.size = sum(p.size for p in self.parts)
            self._eyes = {p.key: np.eye(p.size, dtype=np.float32) for p in self.parts if p.kind == "one_hot"}
        else:
            self.parts = [ObservationPart("", space, 0)]
            self.size = observation_size(space)
        self._eye = np.eye(self.size, dtype=np.float32) if self._one_hot else None

    @property
    def normalized_columns(self) -> np.ndarray | None:
        """Columns that observation normalization applies to: every one for a flat space; a Dict's vector keys."""
        if not self.multi:
            return None
        return np.concatenate([np.arange(p.offset, p.offset + p.size) for p in self.parts if p.kind == "vector"] or [np.zeros(0, np.int64)])

    def is_single(self, observations) -> bool:
        """Whether ``observations`` is one observation (as an env returns it) rather than a batch."""
        if not self.multi:
            array = np.asarray(observations)
            return array.ndim == (0 if self._one_hot else len(self.space.shape))
        first = self.parts[0]
        value = np.asarray(self._value(observations, first.key))
        return value.ndim == (0 if first.kind == "one_hot" else len(first.space.shape))

    def __call__(self, observations) -> np.ndarray:
        if self.multi:
            return self._pack(observations)
        array = np.asarray(observations)
        if self._one_hot:
            return self._eye[array.reshape(-1).astype(np.int64) - self._start]
        array = array.reshape(array.shape[0] if array.ndim > len(self.space.shape) else 1, self.size)
        return array if array.dtype == np.float32 else array.astype(np.float32)

    def _value(self, observations, key: str):
        if isinstance(observations, dict):
            if key not in observations:
                raise UnsupportedSpaceError(f"observation lacks the key {key!r}; expected the keys {[p.key for p in self.parts]}")
            return observations[key]
        return observations[int(key)]

    def _pack(self, observations) -> np.ndarray:
        single = self.is_single(observations)
        columns = []
        for part in self.parts:
            value = np.asarray(self._value(observations, part.key))
            if single:
                value = value[None]
            if part.kind == "one_hot":
                columns.append(self._eyes[part.key][value.reshape(-1).astype(np.int64) - int(part.space.start)])
            else:
                columns.append(value.reshape(value.shape[0], part.size).astype(np.float32, copy=False))
        return np.concatenate(columns, axis=1)

    def is_finite(self, observations) -> bool:
        if self._one_hot:
            return True
        if self.multi:
            return bool(np.isfinite(self._pack(observations)).all())
        return bool(np.isfinite(observations).all())


def take_rows(observations, rows):
    """The observations of some env copies from a batch (a Dict or Tuple batch key by key)."""
    if isinstance(observations, dict):
        return {key: np.asarray(value)[rows] for key, value in observations.items()}
    if isinstance(observations, tuple):
        return tuple(np.asarray(value)[rows] for value in observations)
    return np.asarray(observations)[rows]


def stack_observations(observations: list):
    """One batch from single observations (Dicts and Tuples key by key), as a vector env batches them."""
    first = observations[0]
    if isinstance(first, dict):
        return {key: np.stack([o[key] for o in observations]) for key in first}
    if isinstance(first, tuple):
        return tuple(np.stack([o[i] for o in observations]) for i in range(len(first)))
    return np.stack(observations)


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
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": [[key, space_to_json(part)] for key, part in space.spaces.items()]}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(part) for part in space.spaces]}
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
        n = data["n"]
        return gym.spaces.MultiBinary(n[0] if isinstance(n, list) and len(n) == 1 else n)
    if kind == "Dict":  # a list of pairs keeps the key order, which fixes the packed row's layout
        return gym.spaces.Dict(OrderedDict((str(key), space_from_json(part)) for key, part in data["spaces"]))
    if kind == "Tuple":
        return gym.spaces.Tuple([space_from_json(part) for part in data["spaces"]])
    raise UnsupportedSpaceError(f"unknown space type {kind!r} in saved model; expected Box, Discrete, MultiDiscrete, MultiBinary, Dict or Tuple")


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


def has_image_part(space: gym.Space) -> bool:
    """A Dict or Tuple observation with an image key."""
    return is_multi_input(space) and any(is_image_space(part) for part in (space.spaces.values() if isinstance(space, gym.spaces.Dict) else space.spaces))
