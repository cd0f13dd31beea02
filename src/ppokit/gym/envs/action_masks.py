"""Invalid-action masks: where an env gives them, and reading them as a bool array [copies, logits].

Two conventions, looked for in this order:
- ``"obs"``: an ``action_mask`` key in a Dict observation (PettingZoo's convention);
- ``"method"``: an ``action_masks()`` method on the env (sb3-contrib's MaskablePPO convention);
- ``"info"``: an ``action_mask`` entry in the step and reset infos (Gymnasium's toy-text envs, e.g. Taxi).

A mask has one entry per logit: n for Discrete(n), sum(nvec) for MultiDiscrete (each dimension's
choices side by side); true (or 1) marks a valid action. The config key ``action_masks`` says whether
to use them: ``auto`` (when the env gives them), ``on`` (required), ``off`` (ignored).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ppokit.errors import ConfigError, EnvError
from ppokit.gym.envs.spaces import ACTION_MASK_KEY


def find_mask_source(env, observation_space: gym.Space, reset_infos: dict, vectorized: bool = True) -> str | None:
    """Which convention ``env`` (a vector env, or one env with ``vectorized=False``) follows, or None."""
    if isinstance(observation_space, gym.spaces.Dict) and ACTION_MASK_KEY in observation_space.spaces:
        return "obs"
    if vectorized:
        # asked through has_wrapper_attr: a failed call() would leave an AsyncVectorEnv's workers dead
        call = getattr(env, "call", None)
        if call is not None and all(call("has_wrapper_attr", "action_masks")):
            return "method"
    elif env.has_wrapper_attr("action_masks"):
        return "method"
    if ACTION_MASK_KEY in reset_infos:
        return "info"
    return None


class ActionMaskReader:
    """Reads the masks of a vector env (or of one env) after each reset and step, and checks them."""

    def __init__(self, source: str, dist, action_space: gym.Space, env_name: str, vectorized: bool = True):
        self.source = source
        self.env_name = env_name
        self.vectorized = vectorized
        self.size = dist.param_size
        self.bounds = logit_bounds(dist)  # every action dimension must keep a valid choice
        self.action_space = action_space

    @classmethod
    def for_env(cls, setting: str, env, observation_space: gym.Space, reset_infos: dict, dist, action_space: gym.Space, env_name: str,
                vectorized: bool = True) -> ActionMaskReader | None:
        """The reader the ``action_masks`` setting asks for, or None when masks are not used."""
        if setting == "off":
            return None
        source = find_mask_source(env, observation_space, reset_infos, vectorized)
        if source is None:
            if setting == "on":
                raise ConfigError(f"action_masks is 'on', but environment {env_name!r} gives no action mask; expected an "
                                  f"{ACTION_MASK_KEY!r} key in its Dict observation or in info, or an action_masks() method")
            return None
        if not getattr(dist, "supports_masks", False):
            raise ConfigError(f"environment {env_name!r} gives action masks (from its {source}), but its action space {action_space} "
                              f"is neither Discrete nor MultiDiscrete, the spaces masks apply to (set action_masks: off to ignore them)")
        return cls(source, dist, action_space, env_name, vectorized)

    def read(self, env, obs, infos: dict, global_step: int, ignore: np.ndarray | None = None) -> np.ndarray:
        """bool [copies, logits] (one env: [logits]). ``ignore``: copies whose next action the env ignores
        (NEXT_STEP resets), which may have no valid action."""
        raw = self._raw(env, obs, infos)
        copies = raw.shape[0] if self.vectorized else 1
        try:
            mask = np.asarray(raw).astype(bool).reshape(copies, self.size)
        except ValueError:
            raise EnvError(f"environment {self.env_name!r} gave an action mask of shape {np.shape(raw)} (from its {self.source}); "
                           f"expected {self.size} entries per copy, one per action of {self.action_space}") from None
        if ignore is not None:
            mask[ignore] = True
        bad = first_without_valid_action(mask, self.bounds)
        if bad is not None:
            raise EnvError(f"environment {self.env_name!r} (copy {bad}) gave an action mask with no valid action at global step "
                           f"{global_step}: {mask[bad].astype(int).tolist()}; expected at least one valid action"
                           f"{' in each dimension' if len(self.bounds) > 2 else ''}")
        return mask if self.vectorized else mask[0]

    def _raw(self, env, obs, infos: dict) -> np.ndarray:
        if self.source == "obs":
            return np.asarray(obs[ACTION_MASK_KEY])
        if self.source == "method":
            if self.vectorized:
                return np.stack([np.asarray(m) for m in env.call("action_masks")])
            return np.asarray(env.get_wrapper_attr("action_masks")())
        if ACTION_MASK_KEY not in infos:
            raise EnvError(f"environment {self.env_name!r} gave its action mask in info at reset, but this info has no {ACTION_MASK_KEY!r}")
        raw = np.asarray(infos[ACTION_MASK_KEY])
        present = infos.get(f"_{ACTION_MASK_KEY}")
        if self.vectorized and present is not None and not np.all(present):
            raw = raw.copy()
            raw[~np.asarray(present)] = 1  # a copy whose info lacks a mask allows every action
        return raw


def logit_bounds(dist) -> np.ndarray:
    """Where each action dimension's logits begin and end: [0, n] for Discrete, cumulative nvec for MultiDiscrete."""
    sizes = [part.param_size for part in dist.parts] if hasattr(dist, "parts") else [dist.param_size]
    return np.cumsum([0, *sizes])


def first_without_valid_action(mask: np.ndarray, bounds: np.ndarray) -> int | None:
    """The first row of ``mask`` [rows, logits] where some action dimension has no valid choice, or None."""
    empty = np.zeros(mask.shape[0], dtype=bool)
    for begin, end in zip(bounds[:-1], bounds[1:]):
        empty |= ~mask[:, begin:end].any(axis=1)
    return int(np.flatnonzero(empty)[0]) if empty.any() else None
