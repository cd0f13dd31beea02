"""Env backends come from one table (ENV_BACKENDS): a new one is one entry, which config validation, training and
evaluation all take."""

import numpy as np
import pytest

from ppokit import PPO, PPOConfig
from ppokit.errors import ConfigError
from ppokit.gym.envs import make
from ppokit.gym.evaluate import evaluate_policy


def test_a_backend_added_to_the_table_is_accepted_and_steps_training_and_evaluation(monkeypatch):
    calls = []

    def counted_backend(source, n_envs, mode, env_kwargs, seed, step_limit):
        calls.append(n_envs)
        return make.gymnasium_vector_env(source, n_envs, "sync", env_kwargs, seed, step_limit)

    with pytest.raises(ConfigError, match=r"env_backend must be one of \['gymnasium', 'envpool'\], got 'counted'"):
        PPOConfig.from_dict({"env_backend": "counted"})
    monkeypatch.setitem(make.ENV_BACKENDS, "counted", counted_backend)
    agent = PPO("CartPole-v1", {"env_backend": "counted", "n_envs": 2, "n_steps": 64, "minibatch_size": 64, "n_epochs": 1, "total_steps": 128,
                                "tensorboard": False}, verbose=False, progress_bar=False)
    agent.learn()
    assert calls == [2]  # training's envs
    returns = evaluate_policy(agent, episodes=3)
    assert calls == [2, 3]  # evaluation's envs, from the same backend
    assert len(returns) == 3 and all(np.isfinite(returns)) and min(returns) >= 1


def test_an_unknown_backend_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match="env_backend must be one of"):
        PPO("CartPole-v1", {"env_backend": "pool"}, verbose=False)
