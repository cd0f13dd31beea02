"""Small environments that ppokit registers, each testing one thing a policy needs (they train in seconds):

- ``ppokit/CueRecall-v0``: memory. A cue is shown at the first step only; after ``delay`` blank steps
  the agent must name it (+1 right, -1 wrong). A policy without memory scores 0 on average, one
  that remembers scores 1. ``dict_obs=True`` shows it as a Dict with an image key, a vector key, a
  Discrete clock and an ``action_mask`` (wait before the query, answer at it): Dict observations,
  masks and an LSTM in one env.
- ``ppokit/MaskedChoice-v0``: action masks. Each step only ``n_valid`` of ``n_actions`` actions are valid
  (``action_masks()`` says which; the observation shows them too); the good one among them pays 1,
  an invalid one ends the episode.
- ``ppokit/DictTarget-v0``: Dict observations. The right action depends on an image key, a vector
  key and a Discrete key together (a third of the reward each).
- ``ppokit/CartPoleNoVelocity-v1``: CartPole-v1 with the two velocities removed from the
  observation: it must be remembered how the pole moves (a standard memory benchmark).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

IMAGE_SIDE = 36  # the smallest frame the Nature CNN takes


def _half_image(side: int) -> np.ndarray:
    """A 36x36x1 frame lit on its left (side 0) or right (side 1) half."""
    image = np.zeros((IMAGE_SIDE, IMAGE_SIDE, 1), dtype=np.uint8)
    half = IMAGE_SIDE // 2
    image[:, half * side : half * (side + 1)] = 255
    return image


class CueRecallEnv(gym.Env):
    def __init__(self, delay: int = 4, dict_obs: bool = False):
        self.delay = int(delay)
        self.dict_obs = bool(dict_obs)
        self.length = self.delay + 2
        if self.dict_obs:
            self.observation_space = gym.spaces.Dict({
                "image": gym.spaces.Box(0, 255, (IMAGE_SIDE, IMAGE_SIDE, 1), np.uint8),
                "noise": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                "clock": gym.spaces.Discrete(self.length),
                "action_mask": gym.spaces.MultiBinary(3),
            })
            self.action_space = gym.spaces.Discrete(3)  # 0 waits, 1 and 2 name cue 0 and cue 1
        else:
            self.observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)  # [cue 0 shown, cue 1 shown, query]
            self.action_space = gym.spaces.Discrete(2)
        self.t = 0
        self.cue = 0

    def _obs(self):
        query = self.t == self.length - 1
        if not self.dict_obs:
            obs = np.zeros(3, np.float32)
            if self.t == 0:
                obs[self.cue] = 1.0
            obs[2] = float(query)
            return obs
        return {
            "image": _half_image(self.cue) if self.t == 0 else np.zeros((IMAGE_SIDE, IMAGE_SIDE, 1), np.uint8),
            "noise": self.np_random.uniform(-1, 1, 2).astype(np.float32),
            "clock": self.t,
            "action_mask": np.array([0, 1, 1] if query else [1, 0, 0], dtype=np.int8),
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.cue = int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        action = int(action)
        query = self.t == self.length - 1
        if self.dict_obs:
            answer = action - 1  # -1: wait
            if not query and answer < 0:
                self.t += 1
                return self._obs(), 0.0, False, False, {}
            # an answer before the query, or a wait at it, is wrong
            return self._obs(), 1.0 if query and answer == self.cue else -1.0, True, False, {}
        if not query:
            self.t += 1
            return self._obs(), 0.0, False, False, {}
        return self._obs(), 1.0 if action == self.cue else -1.0, True, False, {}


class MaskedChoiceEnv(gym.Env):
    def __init__(self, n_actions: int = 64, n_valid: int = 4, length: int = 20):
        self.n_actions, self.n_valid, self.length = int(n_actions), int(n_valid), int(length)
        # [which actions are valid, which one is good]
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2 * self.n_actions,), np.float32)
        self.action_space = gym.spaces.Discrete(self.n_actions)
        self.valid = np.ones(self.n_actions, bool)
        self.good = 0
        self.t = 0

    def _draw(self):
        chosen = self.np_random.choice(self.n_actions, self.n_valid, replace=False)
        self.valid = np.zeros(self.n_actions, bool)
        self.valid[chosen] = True
        self.good = int(chosen[0])
        obs = np.zeros(2 * self.n_actions, np.float32)
        obs[: self.n_actions] = self.valid
        obs[self.n_actions + self.good] = 1.0
        return obs

    def action_masks(self) -> np.ndarray:
        return self.valid.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def step(self, action):
        action = int(action)
        if not self.valid[action]:
            return self._draw(), 0.0, True, False, {}
        reward = 1.0 if action == self.good else 0.0
        self.t += 1
        return self._draw(), reward, False, self.t >= self.length, {}


class DictTargetEnv(gym.Env):
    """10 steps; each action is three bits, each paying 1/3 when it matches its key: the lit half of
    the image, the sign of position[0], the Discrete target."""

    observation_space = gym.spaces.Dict({
        "image": gym.spaces.Box(0, 255, (IMAGE_SIDE, IMAGE_SIDE, 1), np.uint8),
        "position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        "target": gym.spaces.Discrete(2),
    })
    action_space = gym.spaces.Discrete(8)

    def __init__(self, length: int = 10):
        self.length = int(length)
        self.t = 0
        self.bits = np.zeros(3, dtype=np.int64)

    def _draw(self):
        side = int(self.np_random.integers(2))
        position = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        target = int(self.np_random.integers(2))
        self.bits = np.array([side, int(position[0] > 0), target])
        return {"image": _half_image(side), "position": position, "target": target}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def step(self, action):
        chosen = (int(action) >> np.arange(3)) & 1
        reward = float((chosen == self.bits).sum()) / 3.0
        self.t += 1
        return self._draw(), reward, False, self.t >= self.length, {}


class NoVelocityObservation(gym.ObservationWrapper):
    """CartPole's observation without the cart's and the pole's velocities: [position, angle]."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        low, high = env.observation_space.low[[0, 2]], env.observation_space.high[[0, 2]]
        self.observation_space = gym.spaces.Box(low, high, (2,), np.float32)

    def observation(self, observation):
        return observation[[0, 2]]


def make_cartpole_no_velocity(**kwargs) -> gym.Env:
    return NoVelocityObservation(gym.make("CartPole-v1", **kwargs))


def register_toy_envs() -> None:
    for env_id, entry_point, steps in (("ppokit/CueRecall-v0", CueRecallEnv, None), ("ppokit/MaskedChoice-v0", MaskedChoiceEnv, None),
                                       ("ppokit/DictTarget-v0", DictTargetEnv, None),
                                       ("ppokit/CartPoleNoVelocity-v1", make_cartpole_no_velocity, None)):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=steps)
