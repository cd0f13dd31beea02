"""An infinite-horizon task cut by a time limit must learn V = 1/(1-gamma), not the time-limited value."""

import gymnasium as gym
import pytest
import numpy as np

from envs import ConstantRewardEnv
from ppokit import PPO

GAMMA = 0.9
TRUE_VALUE = 1.0 / (1.0 - GAMMA)


def _learned_value(bootstrap: bool) -> float:
    config = {
        "n_envs": 4, "n_steps": 64, "total_steps": 24_576, "gamma": GAMMA, "gae_lambda": 0.95,
        "n_epochs": 10, "minibatch_size": 64, "learning_rate": 3e-3, "bootstrap_truncated": bootstrap, "seed": 0,
    }
    agent = PPO(lambda: gym.wrappers.TimeLimit(ConstantRewardEnv(), max_episode_steps=20), config, verbose=False, progress_bar=False)
    agent.learn()
    return float(agent.policy.value(np.zeros((1, 1), dtype=np.float32))[0])


def test_truncation_is_bootstrapped():
    assert _learned_value(bootstrap=True) == pytest.approx(TRUE_VALUE, rel=0.10)


def test_without_bootstrap_value_is_biased_low():
    value = _learned_value(bootstrap=False)
    assert abs(value - TRUE_VALUE) > 0.10 * TRUE_VALUE
    assert value < TRUE_VALUE
