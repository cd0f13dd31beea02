"""Atari from pixels: the standard preprocessing of the ALE ids, and the real score of whole games.

``make_atari_env`` wraps an ALE id (``ALE/Breakout-v5``; ``pip install 'ppokit[atari]'`` brings
ale-py and its ROMs) the way the PPO paper's code, Stable-Baselines3 and CleanRL do:

1. gymnasium's ``AtariPreprocessing``: up to 30 no-op actions at reset, frame skip 4 with a max over
   the last two frames, 84x84 grayscale (the base env runs with ``frameskip=1``).
2. ``WholeGameScore``: the unclipped score and length (agent steps) of a whole game (all lives), put
   into the info of the step that ends it as ``game_score`` / ``game_length``. That is what ppokit
   logs as ``charts/episodic_return`` and what evaluation returns.
3. ``EpisodicLife``: a lost life ends the episode for the learner (the game goes on underneath).
4. ``FireReset``: games that wait for FIRE get it after every reset.
5. Rewards clipped to their sign; the last 4 frames stacked (``FrameStackObservation``): uint8 (4, 84, 84).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ppokit.errors import EnvError

FRAME_STACK = 4
NOOP_MAX = 30


def is_atari_id(env_id) -> bool:
    return isinstance(env_id, str) and env_id.startswith("ALE/")


def register_ale() -> None:
    try:
        import ale_py
    except ImportError:
        raise EnvError("Atari ids (ALE/...) need ale-py, which ships the game ROMs: pip install 'ppokit[atari]'") from None
    gym.register_envs(ale_py)


class WholeGameScore(gym.Wrapper):
    """Adds ``game_score`` and ``game_length`` (agent steps) to the info of the step that ends a game."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.score, self.length = 0.0, 0

    def reset(self, **kwargs):
        self.score, self.length = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.score += float(reward)
        self.length += 1
        if terminated or truncated:
            info = dict(info, game_score=self.score, game_length=self.length)
        return obs, reward, terminated, truncated, info


class EpisodicLife(gym.Wrapper):
    """A lost life is a terminal state for the learner; only a real game over resets the game."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:  # a life was lost: go on from where the game is, with one no-op step
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.game_over = False
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Presses FIRE (then UP, as the reference wrappers do) after a reset, for games that wait for it."""

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                self.env.reset(**kwargs)
        return obs, info


def make_atari_env(env_id: str, env_kwargs: dict | None = None, render_mode: str | None = None) -> gym.Env:
    register_ale()
    kwargs = {"frameskip": 1} | dict(env_kwargs or {})
    if kwargs["frameskip"] != 1:
        raise EnvError(f"{env_id}: env_kwargs frameskip={kwargs['frameskip']}; ppokit skips 4 frames itself (with a max over the last two), "
                       "so the base env must use frameskip=1")
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    env = gym.make(env_id, **kwargs)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=NOOP_MAX, frame_skip=4, screen_size=84, terminal_on_life_loss=False, grayscale_obs=True,
                                          scale_obs=False)
    env = WholeGameScore(env)
    env = EpisodicLife(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    env = gym.wrappers.TransformReward(env, lambda reward: float(np.sign(reward)))
    return gym.wrappers.FrameStackObservation(env, FRAME_STACK)


def finished_games(infos: dict) -> list[tuple[int, float, int]]:
    """(env copy, game score, game length) of every whole game a vector env's step just ended."""
    final = infos.get("final_info")
    if not final or "game_score" not in final:
        return []
    return [(int(i), float(final["game_score"][i]), int(final["game_length"][i])) for i in np.flatnonzero(final["_game_score"])]
