"""An infinite-horizon task cut by a time limit must learn V = 1/(1-gamma), not the time-limited value."""

import gymnasium as gym
import numpy as np
import pytest
from envs import VECTOR_ENV_ID, ConstantRewardEnv

from ppokit import PPO

GAMMA = 0.9
TRUE_VALUE = 1.0 / (1.0 - GAMMA)


def _learned_value(bootstrap: bool, env=None, **overrides) -> float:
    config = {
        "n_envs": 4, "n_steps": 64, "total_steps": 24_576, "gamma": GAMMA, "gae_lambda": 0.95,
        "n_epochs": 10, "minibatch_size": 64, "learning_rate": 3e-3, "bootstrap_truncated": bootstrap, "seed": 0,
    } | overrides
    env = env or (lambda: gym.wrappers.TimeLimit(ConstantRewardEnv(), max_episode_steps=20))
    agent = PPO(env, config, verbose=False, progress_bar=False)
    agent.learn()
    return float(agent.policy.value(np.zeros((1, 1), dtype=np.float32))[0])


def test_truncation_is_bootstrapped():
    assert _learned_value(bootstrap=True) == pytest.approx(TRUE_VALUE, rel=0.10)


def test_without_bootstrap_value_is_biased_low():
    value = _learned_value(bootstrap=False)
    assert abs(value - TRUE_VALUE) > 0.10 * TRUE_VALUE
    assert value < TRUE_VALUE


def test_next_step_autoreset_env_is_bootstrapped_and_its_reset_steps_left_out():
    episodes = []
    value = _learned_value(True, VECTOR_ENV_ID, vec_env="vector")
    assert value == pytest.approx(TRUE_VALUE, rel=0.10)
    agent = PPO(VECTOR_ENV_ID, {"n_envs": 2, "n_steps": 50, "minibatch_size": 50, "total_steps": 100, "vec_env": "vector"}, verbose=False, progress_bar=False)
    agent.learn(callback=lambda m: episodes.extend(agent.logger.last_episodes))
    # 2 envs x 50 calls: episodes of 20 steps, each followed by one reset call that is not a step
    assert episodes and all(e == (20.0, 20) for e in episodes), episodes
    assert agent.global_step == 100 - 2 * 2


def test_an_env_without_a_time_limit_ends_its_evaluation_episodes_at_the_step_limit():
    """A policy that never reaches a terminal state (CliffWalking-v1's walls, any env without a time limit)
    cannot hold an evaluation forever: each episode ends after EVAL_STEP_LIMIT steps with what it collected."""
    from ppokit.gym.evaluate import EVAL_STEP_LIMIT, evaluate_policy

    agent = PPO(ConstantRewardEnv, {"n_envs": 2, "n_steps": 16, "minibatch_size": 32, "total_steps": 32}, verbose=False, progress_bar=False)
    assert evaluate_policy(agent, episodes=3) == [float(EVAL_STEP_LIMIT)] * 3
    limited = lambda: gym.wrappers.TimeLimit(ConstantRewardEnv(), max_episode_steps=7)  # noqa: E731
    assert evaluate_policy(agent, env=limited, episodes=2) == [7.0, 7.0]  # an env's own limit is kept
