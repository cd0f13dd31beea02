"""Each supported action space trains; Box actions are stored unclipped and clipped only for the env."""

import gymnasium as gym
import numpy as np
import pytest
import torch

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
    agent.learn()  # SpaceCheckEnv asserts every received action is in its space
    assert np.isfinite(agent.last_metrics["losses/policy_loss"])
    obs = np.zeros((5, 3), np.float32)
    actions = agent.predict(obs, deterministic=True)
    assert all(space.contains(np.asarray(a, dtype=space.dtype)) for a in actions)


def test_box_actions_stored_unclipped():
    space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)
    agent = PPO(lambda: SpaceCheckEnv(space), SMALL | {"log_std_init": 1.0}, verbose=False, progress_bar=False)
    agent.learn()
    stored = agent.collector.actions
    assert (stored.abs() > 0.1).float().mean() > 0.5  # the sampled (unclipped) actions are what PPO trains on


def test_discrete_observations_are_one_hot():
    obs_space = gym.spaces.Discrete(5)
    agent = PPO(lambda: SpaceCheckEnv(gym.spaces.Discrete(2), obs_space), SMALL, verbose=False, progress_bar=False)
    agent.learn()
    assert agent.collector.obs.shape[-1] == 5
    assert torch.equal(agent.collector.obs.sum(-1), torch.ones(32, 2))


def test_categorical_sampling_matches_probabilities():
    from ppokit.gym.distributions import Categorical

    torch.manual_seed(0)
    dist = Categorical(gym.spaces.Discrete(4))
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probs.log().expand(200_000, 4)
    actions = dist.sample(logits)
    logprobs, _ = dist.log_prob_entropy(logits, actions)
    freq = torch.bincount(actions, minlength=4).float() / len(actions)
    torch.testing.assert_close(freq, probs, atol=5e-3, rtol=0)
    torch.testing.assert_close(logprobs, probs.log()[actions])
