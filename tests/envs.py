"""Tiny custom environments the tests train on."""

import gymnasium as gym
import numpy as np


class ConstantRewardEnv(gym.Env):
    """Reward 1 every step, never terminates, observation carries no clock: V = 1 / (1 - gamma)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, False, False, {}


class NaNAfterEnv(gym.Env):
    """Returns a NaN observation after a few steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, nan_at: int = 5):
        self.nan_at = nan_at
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(2, np.nan if self.t >= self.nan_at else 0.0, np.float32)
        return obs, 0.0, False, self.t >= 50, {}


class SpaceCheckEnv(gym.Env):
    """Any action space; asserts that every action it receives lies in that space."""

    def __init__(self, action_space, observation_space=None):
        self.action_space = action_space
        self.observation_space = observation_space or gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.received = []
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, dtype=self.action_space.dtype)), f"{action} not in {self.action_space}"
        self.t += 1
        return self.observation_space.sample(), float(np.sum(action)), False, self.t >= 20, {}


class DictObsEnv(gym.Env):
    observation_space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,)), "b": gym.spaces.Discrete(3)})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


class ConstantRewardVectorEnv(gym.vector.VectorEnv):
    """ConstantRewardEnv as a numpy vector env that resets on the step after an episode ends
    (gymnasium's NEXT_STEP autoreset, like its vectorized CartPole): the reset step gives reward 0."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, max_episode_steps: int = 20):
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.single_observation_space = ConstantRewardEnv.observation_space
        self.single_action_space = ConstantRewardEnv.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.steps = np.zeros(num_envs, np.int64)
        self.prev_done = np.zeros(num_envs, bool)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps[:] = 0
        self.prev_done[:] = False
        return np.zeros((self.num_envs, 1), np.float32), {}

    def step(self, actions):
        self.steps += 1
        reward = np.ones(self.num_envs, np.float32)
        truncated = self.steps >= self.max_episode_steps
        reward[self.prev_done] = 0.0
        truncated[self.prev_done] = False
        self.steps[self.prev_done] = 0
        self.prev_done = truncated.copy()
        return np.zeros((self.num_envs, 1), np.float32), reward, np.zeros(self.num_envs, bool), truncated, {}


VECTOR_ENV_ID = "ppokit-test/ConstantRewardVector-v0"
if VECTOR_ENV_ID not in gym.registry:
    gym.register(VECTOR_ENV_ID, entry_point="envs:ConstantRewardEnv", vector_entry_point="envs:ConstantRewardVectorEnv", max_episode_steps=20)


class FixedLengthWalkEnv(gym.Env):
    """A walk on a line whose episodes all last exactly ``length`` steps and always start at 0.

    With ``length`` equal to a rollout's n_steps, every update boundary is an episode boundary
    and resets use no randomness: a resumed run sees exactly the observations of an uninterrupted one.
    """

    observation_space = gym.spaces.Box(-100.0, 100.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 16):
        self.length = length
        self.t = 0
        self.position = 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.position = 0, 0.0
        return np.array([self.position], np.float32), {}

    def step(self, action):
        self.t += 1
        self.position += 1.0 if int(action) == 1 else -1.0
        return np.array([self.position], np.float32), -abs(self.position - 3.0), False, self.t >= self.length, {}


class CrashingEnv(gym.Env):
    """Raises inside step() after ``crash_at`` steps of its lifetime."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, crash_at: int = 100):
        self.crash_at = crash_at
        self.calls = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.calls += 1
        if self.calls >= self.crash_at:
            raise RuntimeError("simulator lost contact")
        return np.zeros(2, np.float32), 1.0, False, self.calls % 10 == 0, {}


class PixelCatchEnv(gym.Env):
    """Catch, seen only as pixels: a ball falls one row a step; move the paddle (left, stay, right) under it.

    A ``size`` x ``size`` grid drawn ``cell`` pixels a cell into a uint8 frame (H, W, 1): the ball and
    the paddle are bright squares. Reward +1 for a catch, -1 for a miss, at the last step
    (``size - 1`` steps an episode). A random policy catches about one ball in four. ``fixed_start``:
    every episode starts alike (for resume tests, where restarted envs must not change the episodes).
    """

    action_space = gym.spaces.Discrete(3)

    def __init__(self, size: int = 10, cell: int = 4, fixed_start: bool = False):
        self.size, self.cell, self.fixed_start = size, cell, fixed_start
        self.observation_space = gym.spaces.Box(0, 255, (size * cell, size * cell, 1), np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.ball_row, self.ball_col = 0, 2 if self.fixed_start else int(self.np_random.integers(self.size))
        self.paddle = self.size - 2 if self.fixed_start else int(self.np_random.integers(self.size))
        return self._frame(), {}

    def step(self, action):
        self.paddle = int(np.clip(self.paddle + int(action) - 1, 0, self.size - 1))
        self.ball_row += 1
        done = self.ball_row == self.size - 1
        reward = (1.0 if self.paddle == self.ball_col else -1.0) if done else 0.0
        return self._frame(), reward, done, False, {}

    def _frame(self):
        frame = np.zeros(self.observation_space.shape, np.uint8)
        c = self.cell
        frame[self.ball_row * c:(self.ball_row + 1) * c, self.ball_col * c:(self.ball_col + 1) * c] = 255
        bottom = (self.size - 1) * c
        frame[bottom:bottom + c, self.paddle * c:(self.paddle + 1) * c] = 255
        return frame


class InfoMaskEnv(gym.Env):
    """One random valid action of 5 per step, given in info["action_mask"]; records whether each action it got was valid.

    Reward 1 for a valid action; an invalid one ends the episode. ``empty_at``: the mask allows nothing from that step on.
    """

    observation_space = gym.spaces.Box(0.0, 1.0, (5,), np.float32)
    action_space = gym.spaces.Discrete(5)
    received_valid: list = []
    mask_in_info = True

    def __init__(self, empty_at: int | None = None, length: int = 10):
        self.empty_at, self.length = empty_at, length
        self.valid = np.ones(5, bool)
        self.t = 0

    def _draw(self):
        self.valid = np.zeros(5, bool)
        if self.empty_at is None or self.t < self.empty_at:
            self.valid[self.np_random.integers(5)] = True
        return self.np_random.uniform(0, 1, 5).astype(np.float32), ({"action_mask": self.valid.astype(np.int8)} if self.mask_in_info else {})

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw()

    def step(self, action):
        valid = bool(self.valid[int(action)])
        InfoMaskEnv.received_valid.append(valid)
        self.t += 1
        obs, info = self._draw()
        return obs, float(valid), not valid, self.t >= self.length, info


class MaskRecordingEnv(InfoMaskEnv):
    """InfoMaskEnv with its mask given by an action_masks() method instead (sb3-contrib's convention)."""

    mask_in_info = False

    def action_masks(self):
        return self.valid.copy()


class MultiDiscreteMaskEnv(gym.Env):
    """MultiDiscrete([3, 4]) actions with an 'action_mask' observation key: one valid choice per dimension."""

    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(0.0, 1.0, (2,), np.float32), "action_mask": gym.spaces.MultiBinary(7)})
    action_space = gym.spaces.MultiDiscrete([3, 4])
    received_valid: list = []

    def _obs(self):
        self.choice = (int(self.np_random.integers(3)), int(self.np_random.integers(4)))
        mask = np.zeros(7, np.int8)
        mask[self.choice[0]] = 1
        mask[3 + self.choice[1]] = 1
        return {"x": self.np_random.uniform(0, 1, 2).astype(np.float32), "action_mask": mask}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        MultiDiscreteMaskEnv.received_valid.append(tuple(int(a) for a in action) == self.choice)
        self.t += 1
        return self._obs(), 0.0, False, self.t >= 10, {}


class DictWalkEnv(gym.Env):
    """FixedLengthWalkEnv as a Dict observation with a clock and an action mask (no 'stay' on even steps).

    Episodes last exactly ``length`` steps and reset without randomness: with ``length`` equal to
    n_steps, a resumed run sees exactly the observations of an uninterrupted one.
    """

    def __init__(self, length: int = 16):
        self.length = length
        self.observation_space = gym.spaces.Dict({
            "position": gym.spaces.Box(-100.0, 100.0, (1,), np.float32),
            "clock": gym.spaces.Discrete(length + 1),
            "action_mask": gym.spaces.MultiBinary(3),
        })
        self.action_space = gym.spaces.Discrete(3)  # left, stay, right
        self.position = 0.0
        self.t = 0

    def _obs(self):
        return {"position": np.array([self.position], np.float32), "clock": self.t,
                "action_mask": np.array([1, self.t % 2, 1], np.int8)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.t = 0.0, 0
        return self._obs(), {}

    def step(self, action):
        assert self.t % 2 or int(action) != 1, "a masked action reached the env"
        self.position += int(action) - 1
        self.t += 1
        return self._obs(), -abs(self.position - 3.0) / 10.0, False, self.t >= self.length, {}
