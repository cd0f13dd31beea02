"""envpool as a vector-env backend: a gymnasium VectorEnv over envpool's C++ pool of env copies.

envpool resets a finished copy on the following step and ignores that step's action, which is
gymnasium's NEXT_STEP autoreset: the rollout collector already masks that step out, and a truncated
episode's final observation is the one returned with ``truncated``, so it is bootstrapped as with
gymnasium's own envs. envpool seeds copy i with ``seed + i`` when the pool is built, so a reset with
a new seed builds the pool again.

ALE ids (``ALE/Breakout-v5``) run as envpool's ``Breakout-v5`` with the preprocessing of
``ppokit.gym.envs.atari`` done in C++ (30 no-ops, frame skip 4 with max-pool, episodic life, fire reset,
84x84 grayscale, reward sign, 4 frames stacked, v5's sticky actions), and the real score of each
whole game is reported in ``infos["final_info"]["game_score"]`` as the gymnasium chain reports it.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from ppokit.errors import EnvError

INSTALL_HINT = "pip install 'ppokit[envpool]'"
# envpool's options for ppokit's Atari preprocessing (ppokit.gym.envs.atari), on ALE v5's defaults
ATARI_OPTIONS = {"episodic_life": True, "reward_clip": True, "noop_max": 30, "frame_skip": 4, "img_height": 84, "img_width": 84,
                 "stack_num": 4, "gray_scale": True, "use_fire_reset": True, "repeat_action_probability": 0.25, "max_episode_steps": 27_000}


def _import_envpool():
    try:
        import envpool
    except ImportError:
        raise EnvError(f"env_backend 'envpool' needs the envpool package ({INSTALL_HINT})") from None
    return envpool


def numpy_too_new_for(envpool) -> bool:
    """envpool up to 0.8.4 was built against numpy 1.x; under numpy 2 it returns wrong observations
    (measured: every entry of every copy the same value)."""
    from packaging.version import Version

    return Version(np.__version__) >= Version("2") and Version(getattr(envpool, "__version__", "0")) <= Version("0.8.4")


def check_envpool_usable(envpool) -> None:
    """Refuse an envpool that would train on garbage observations (``numpy_too_new_for``)."""
    if numpy_too_new_for(envpool):
        raise EnvError(f"envpool {envpool.__version__} returns wrong observations with numpy {np.__version__}; "
                       f"it needs numpy<2 ({INSTALL_HINT} installs a matching numpy)")


class EnvpoolVectorEnv(gym.vector.VectorEnv):
    """``n_envs`` copies of ``env_id`` stepped by envpool, with gymnasium's vector-env interface."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, env_id: str, n_envs: int, env_kwargs: dict | None = None, seed: int = 0):
        self._envpool = _import_envpool()
        check_envpool_usable(self._envpool)
        self.atari = env_id.startswith("ALE/")
        pool_id = env_id[len("ALE/"):] if self.atari else env_id
        if pool_id not in self._envpool.list_all_envs():
            near = sorted(e for e in self._envpool.list_all_envs() if e.split("-")[0] == env_id.split("-")[0])
            hint = f"; envpool has {near}" if near else " (envpool.list_all_envs() lists them)"
            raise EnvError(f"envpool has no env {pool_id!r}{hint}; use env_backend: gymnasium for it")
        self.env_id, self.pool_id, self.num_envs = env_id, pool_id, n_envs
        self.env_kwargs = (ATARI_OPTIONS if self.atari else {}) | dict(env_kwargs or {})
        # whole games of Atari: the unclipped score and the steps since the game began
        self._game_score, self._game_length = np.zeros(n_envs), np.zeros(n_envs, dtype=np.int64)
        self._resetting = np.zeros(n_envs, dtype=bool)
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
        if env_id not in gym.registry or self.atari:  # (Atari: the preprocessed frames, as ppokit.gym.envs.atari makes them)
            return pool_spaces
        probe = gym.make(env_id)
        spaces = (probe.observation_space, probe.action_space)
        probe.close()
        if any(ours.shape != theirs.shape for ours, theirs in zip(spaces, pool_spaces)):
            raise EnvError(f"envpool's {env_id!r} has spaces {pool_spaces}, gymnasium's has {spaces}; they must agree in shape")
        return spaces

    def _build(self, seed: int) -> None:
        try:
            self._pool = self._envpool.make(self.pool_id, env_type="gymnasium", num_envs=self.num_envs, seed=int(seed), **self.env_kwargs)
        except TypeError as exc:
            raise EnvError(f"envpool env {self.env_id!r} rejected env_kwargs {self.env_kwargs}: {exc}") from None
        self._seed = seed

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None and seed != self._seed:
            self._pool.close()
            self._build(seed)
        obs, _ = self._pool.reset()
        self._game_score[:], self._game_length[:], self._resetting[:] = 0.0, 0, False
        return obs, {}

    def step(self, actions):
        actions = np.asarray(actions, dtype=self._action_dtype)
        obs, rewards, terminated, truncated, info = self._pool.step(actions)
        terminated, truncated = np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool)
        infos = self._whole_games(info, truncated) if self.atari else {}
        self._resetting = terminated | truncated
        return obs, np.asarray(rewards, dtype=np.float64), terminated, truncated, infos

    def _whole_games(self, info: dict, truncated: np.ndarray) -> dict:
        """Adds up the unclipped rewards of each game (envpool's info["reward"]); a game ends at a real game
        over (info["terminated"], not a lost life) or a time limit. The step after each episode end is
        the reset envpool makes, not a step of the game."""
        playing = ~self._resetting
        self._game_score[playing] += np.asarray(info["reward"], dtype=np.float64)[playing]
        self._game_length[playing] += 1
        over = playing & ((np.asarray(info["terminated"]) != 0) | truncated)
        if not over.any():
            return {}
        final = {"game_score": self._game_score.copy(), "_game_score": over, "game_length": self._game_length.copy(), "_game_length": over}
        self._game_score[over], self._game_length[over] = 0.0, 0
        return {"final_info": final, "_final_info": over}

    def close_extras(self, **kwargs) -> None:
        self._pool.close()
