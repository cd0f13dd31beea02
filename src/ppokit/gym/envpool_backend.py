"""envpool as a vector-env backend: a gymnasium VectorEnv over envpool's C++ pool of env copies.

envpool resets a finished copy on the following step and ignores that step's action, which is
gymnasium's NEXT_STEP autoreset: the rollout collector already masks that step out, and a truncated
episode's final observation is the one returned with ``truncated``, so it is bootstrapped as with
gymnasium's own envs. envpool seeds copy i with ``seed + i`` when the pool is built, so a reset with
a new seed builds the pool again.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from ppokit.errors import EnvError

INSTALL_HINT = "pip install 'ppokit[envpool]'"


def _import_envpool():
    try:
        import envpool
    except ImportError:
        raise EnvError(f"env_backend 'envpool' needs the envpool package ({INSTALL_HINT})") from None
    return envpool


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def check_envpool_usable(envpool) -> None:
    """envpool up to 0.8.4 was built against numpy 1.x; under numpy 2 it returns wrong observations
    (measured: every entry of every copy the same value), so refuse rather than train on garbage."""
    if _version(np.__version__) >= (2,) and _version(getattr(envpool, "__version__", "0")) <= (0, 8, 4):
        raise EnvError(f"envpool {envpool.__version__} returns wrong observations with numpy {np.__version__}; "
                       f"it needs numpy<2 ({INSTALL_HINT} installs a matching numpy)")


class EnvpoolVectorEnv(gym.vector.VectorEnv):
    """``n_envs`` copies of ``env_id`` stepped by envpool, with gymnasium's vector-env interface."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, env_id: str, n_envs: int, env_kwargs: dict | None = None, seed: int = 0):
        self._envpool = _import_envpool()
        check_envpool_usable(self._envpool)
        if env_id not in self._envpool.list_all_envs():
            near = sorted(e for e in self._envpool.list_all_envs() if e.split("-")[0] == env_id.split("-")[0])
            hint = f"; envpool has {near}" if near else " (envpool.list_all_envs() lists them)"
            raise EnvError(f"envpool has no env {env_id!r}{hint}; use env_backend: gymnasium for it")
        self.env_id, self.num_envs, self.env_kwargs = env_id, n_envs, dict(env_kwargs or {})
        self._seed = None
        self._build(seed)
        self.single_observation_space, self.single_action_space = self._spaces(env_id)
        self._action_dtype = self._pool.action_space.dtype
        self.observation_space = batch_space(self.single_observation_space, n_envs)
        self.action_space = batch_space(self.single_action_space, n_envs)

    def _spaces(self, env_id: str):
        """gymnasium's own spaces for an id it also registers (envpool writes infinite bounds as float32
        max and MuJoCo actions as float64), so a model trained on either backend fits the other."""
        pool_spaces = (self._pool.observation_space, self._pool.action_space)
        if env_id not in gym.registry:
            return pool_spaces
        probe = gym.make(env_id)
        spaces = (probe.observation_space, probe.action_space)
        probe.close()
        if any(ours.shape != theirs.shape for ours, theirs in zip(spaces, pool_spaces)):
            raise EnvError(f"envpool's {env_id!r} has spaces {pool_spaces}, gymnasium's has {spaces}; they must agree in shape")
        return spaces

    def _build(self, seed: int) -> None:
        try:
            self._pool = self._envpool.make(self.env_id, env_type="gymnasium", num_envs=self.num_envs, seed=int(seed), **self.env_kwargs)
        except TypeError as exc:
            raise EnvError(f"envpool env {self.env_id!r} rejected env_kwargs {self.env_kwargs}: {exc}") from None
        self._seed = seed

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None and seed != self._seed:
            self._pool.close()
            self._build(seed)
        obs, _ = self._pool.reset()
        return obs, {}

    def step(self, actions):
        actions = np.asarray(actions, dtype=self._action_dtype)
        obs, rewards, terminated, truncated, _ = self._pool.step(actions)
        return obs, np.asarray(rewards, dtype=np.float64), np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool), {}

    def close_extras(self, **kwargs) -> None:
        self._pool.close()
