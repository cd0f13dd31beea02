"""Each supported action space trains; Box actions are stored unclipped and clipped only for the env."""

import gymnasium as gym
import numpy as np
import pytest
from envs import SpaceCheckEnv

from ppokit import PPO

SMALL = {"n_envs": 2, "n_steps": 32, "total_steps": 128, "minibatch_size": 32}


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Discrete(3),
        gym.spaces.Discrete(3, start=-1),
        gym.spaces.MultiDiscrete([2, 3, 4]),
        gym.spaces.MultiBinary(4),
        gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
    ],
    ids=str,
)
def test_action_space_trains_and_sends_valid_actions(space):
    agent = PPO(lambda: SpaceCheckEnv(space), SMALL, verbose=False, progress_bar=False)
    initial = {name: np.array(array, copy=True) for name, array in agent.policy.state_dict().items()}
    agent.learn()  # SpaceCheckEnv asserts every received action is in its space
    assert np.isfinite(agent.last_metrics["losses/policy_loss"])
    trained = agent.policy.state_dict()
    moved = [name for name in initial if not np.array_equal(initial[name], trained[name])]
    assert any("actor" in name for name in moved), moved  # the policy's own weights were trained
    obs = np.zeros((5, 3), np.float32)
    actions = agent.predict(obs, deterministic=True)
    assert all(space.contains(np.asarray(a, dtype=space.dtype)) for a in actions)


def test_box_actions_stored_unclipped():
    space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)
    agent = PPO(lambda: SpaceCheckEnv(space), SMALL | {"log_std_init": 1.0}, verbose=False, progress_bar=False)
    agent.learn()
    stored = agent.collector.actions
    assert (np.abs(stored) > 0.1).mean() > 0.5  # the sampled (unclipped) actions are what PPO trains on


def test_discrete_observations_are_one_hot():
    obs_space = gym.spaces.Discrete(5)
    agent = PPO(lambda: SpaceCheckEnv(gym.spaces.Discrete(2), obs_space), SMALL, verbose=False, progress_bar=False)
    agent.learn()
    assert agent.collector.obs.shape[-1] == 5
    np.testing.assert_array_equal(agent.collector.obs.sum(-1), np.ones((32, 2)))


def test_categorical_sampling_matches_probabilities():
    from ppokit.gym.policies.distributions import Categorical

    dist = Categorical(gym.spaces.Discrete(4))
    probs = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    logits = np.broadcast_to(np.log(probs), (200_000, 4))
    actions = dist.sample(logits, np.random.default_rng(0))
    logprobs, _, _ = dist.log_prob_entropy(logits, actions)
    freq = np.bincount(actions, minlength=4) / len(actions)
    np.testing.assert_allclose(freq, probs, atol=5e-3, rtol=0)
    np.testing.assert_allclose(logprobs, np.log(probs)[actions], rtol=1e-5)
