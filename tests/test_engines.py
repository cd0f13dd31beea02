"""The numpy engine (hand-written gradients) must make the same update as the torch engine (autograd
through ppokit.core), for every action distribution and every loss option."""

import gymnasium as gym
import numpy as np
import pytest

from ppokit.core.settings import UpdateSettings
from ppokit.gym.config import PPOConfig
from ppokit.gym.engines.numpy_engine import NumpyEngine
from ppokit.gym.engines.torch_engine import TorchEngine
from ppokit.gym.policies.numpy_policy import Policy

OBS = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
ACTION_SPACES = {
    "Discrete": gym.spaces.Discrete(3),
    "Box": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
    "MultiDiscrete": gym.spaces.MultiDiscrete([2, 4]),
    "MultiBinary": gym.spaces.MultiBinary(3),
}


def _problem(action_space, n=96, seed=0, activation="tanh"):
    config = PPOConfig(hidden_sizes=[16, 16], activation=activation, learning_rate=3e-3)
    rng = np.random.default_rng(seed)
    policies = [Policy(OBS, action_space, config) for _ in range(2)]
    policies[0].params.initialize(rng, ortho_init=True, log_std_init=-0.3)
    # a larger policy head than the usual 0.01 gain, so probabilities are far from uniform
    head = policies[0].params.views["actor.4.weight"]
    head[...] = rng.standard_normal(head.shape) * 0.5
    policies[1].params.load_state_dict(policies[0].state_dict())
    obs = rng.uniform(-1, 1, (n, 5)).astype(np.float32)
    actions = policies[0].act(obs, rng)[0]
    numpy_engine = NumpyEngine(policies[0].params, policies[0].dist, activation, config.learning_rate, config.adam_eps)
    logprobs, values = numpy_engine.score(obs, actions)
    samples = {
        "obs": obs,
        "actions": actions,
        # old log-probs and values off from the current ones, so clipping is active for some samples
        "logprobs": (logprobs + rng.normal(0, 0.3, n)).astype(np.float32),
        "values": (values + rng.normal(0, 0.5, n)).astype(np.float32),
        "advantages": rng.normal(0, 1, n).astype(np.float32),
        "returns": rng.normal(0, 1, n).astype(np.float32),
    }
    torch_engine = TorchEngine.for_parameters(policies[1].params, policies[1].dist, activation, config.learning_rate, config.adam_eps, threads=1)
    return (numpy_engine, policies[0]), (torch_engine, policies[1]), samples


def _orders(n, epochs, seed=1):
    rng = np.random.default_rng(seed)
    permutations = [rng.permutation(n) for _ in range(epochs)]
    return lambda epoch: permutations[epoch]


@pytest.mark.parametrize("space_name", list(ACTION_SPACES))
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"clip_range_vf": 0.2, "ent_coef": 0.05},
        {"max_grad_norm": 0.05, "normalize_advantage": False},
        {"mask": True},
    ],
    ids=["plain", "value-clip+entropy", "grad-clip", "mask"],
)
def test_numpy_engine_matches_torch_engine(space_name, options):
    (numpy_engine, numpy_policy), (torch_engine, torch_policy), samples = _problem(ACTION_SPACES[space_name])
    options = dict(options)
    if options.pop("mask", False):
        samples["mask"] = (np.arange(len(samples["obs"])) % 5 != 0).astype(np.float32)
    settings = UpdateSettings(n_epochs=3, minibatch_size=32, clip_range=0.2, **options)
    numpy_stats = numpy_engine.update(samples, settings, _orders(96, 3))
    torch_stats = torch_engine.update(samples, settings, _orders(96, 3))

    assert numpy_stats["num_minibatches"] == torch_stats["num_minibatches"] == 9
    moved = np.abs(numpy_policy.params.flat - _problem(ACTION_SPACES[space_name])[0][1].params.flat).max()
    assert moved > 1e-3  # the update really changed the weights
    np.testing.assert_allclose(numpy_policy.params.flat, torch_policy.params.flat, rtol=1e-4, atol=2e-5)
    for name in ["policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "grad_norm"]:
        assert numpy_stats[name] == pytest.approx(torch_stats[name], rel=1e-3, abs=1e-5), name
    assert numpy_stats["clipfrac"] > 0  # the clipped branch of the loss was exercised


def test_relu_networks_match_too():
    (numpy_engine, numpy_policy), (torch_engine, torch_policy), samples = _problem(ACTION_SPACES["Discrete"], activation="relu")
    settings = UpdateSettings(n_epochs=2, minibatch_size=48, clip_range=0.2)
    numpy_engine.update(samples, settings, _orders(96, 2))
    torch_engine.update(samples, settings, _orders(96, 2))
    np.testing.assert_allclose(numpy_policy.params.flat, torch_policy.params.flat, rtol=1e-4, atol=2e-5)


def test_target_kl_stops_both_engines_at_the_same_minibatch():
    (numpy_engine, _), (torch_engine, _), samples = _problem(ACTION_SPACES["Discrete"])
    numpy_engine.set_learning_rate(0.05)
    torch_engine.set_learning_rate(0.05)
    settings = UpdateSettings(n_epochs=10, minibatch_size=16, clip_range=0.2, target_kl=0.01)
    numpy_stats = numpy_engine.update(samples, settings, _orders(96, 10))
    torch_stats = torch_engine.update(samples, settings, _orders(96, 10))
    assert numpy_stats["stopped_early"] == torch_stats["stopped_early"] == 1.0
    assert numpy_stats["num_minibatches"] == torch_stats["num_minibatches"] < 60


def test_numpy_engine_trains_without_importing_torch():
    import subprocess
    import sys

    code = (
        "import sys; from ppokit import PPO; "
        "PPO('CartPole-v1', {'n_envs': 2, 'n_steps': 16, 'minibatch_size': 16, 'total_steps': 64}, verbose=False, progress_bar=False).learn(); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
