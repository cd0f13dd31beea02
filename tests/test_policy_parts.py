"""Torch policies built from parts: a features extractor chosen by config key, heads, an LSTM on top; a new kind
registered in one file (examples/conv1d_features.py); code named in a config and the safety of loading it."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ppokit import PPO
from ppokit.errors import ConfigError
from ppokit.gym.policies.features import FEATURES_EXTRACTORS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the examples folder, as a user's own package would be importable
from examples.conv1d_features import Conv1dFeatures  # noqa: E402

SPEC = "examples.conv1d_features:Conv1dFeatures"
SMALL = {"n_envs": 2, "n_steps": 32, "minibatch_size": 32, "n_epochs": 2, "total_steps": 128, "tensorboard": False}


def _agent(**keys):
    return PPO("CartPole-v1", SMALL | keys, preset=None, verbose=False, progress_bar=False)


@pytest.mark.parametrize("name", ["conv1d", SPEC])
def test_a_registered_or_named_extractor_builds_the_network_and_trains_it(name):
    agent = _agent(features_extractor=name)
    assert agent.engine.name == "torch" and isinstance(agent.policy.module.features, Conv1dFeatures)
    assert agent.policy.module.actor[0].in_features == 8 * 4  # the heads take the extractor's features_size
    before = agent.policy.module.features.conv[0].weight.detach().clone()
    agent.learn()
    assert not torch.equal(before, agent.policy.module.features.conv[0].weight)  # the extractor is trained with the heads


def test_the_extractor_goes_under_an_lstm(tmp_path):
    agent = _agent(features_extractor="conv1d", policy="lstm", lstm_hidden_size=16)
    assert agent.policy.recurrent and agent.policy.module.lstm.input_size == 32
    agent.learn().save(tmp_path)
    loaded = PPO.load(tmp_path)
    assert loaded.policy.recurrent and isinstance(loaded.policy.module.features, Conv1dFeatures)
    for name, array in agent.policy.state_dict().items():
        np.testing.assert_array_equal(array, loaded.policy.state_dict()[name], err_msg=name)


def test_a_model_naming_code_loads_only_when_the_caller_names_the_same_code(tmp_path):
    _agent(features_extractor=SPEC).learn().save(tmp_path)
    FEATURES_EXTRACTORS.pop(SPEC)  # as in a fresh process, where nothing has imported it
    with pytest.raises(ConfigError, match=f"pass features_extractor='{SPEC}'"):
        PPO.load(tmp_path)
    assert SPEC not in FEATURES_EXTRACTORS  # the refused load imported nothing
    loaded = PPO.load(tmp_path, features_extractor=SPEC)
    assert isinstance(loaded.policy.module.features, Conv1dFeatures)


def test_bad_extractors_are_clear_errors():
    with pytest.raises(ConfigError, match="features_extractor 'conv9d' is not registered"):
        _agent(features_extractor="conv9d")
    with pytest.raises(ConfigError, match="cannot import 'Nope' from 'examples.conv1d_features'"):
        _agent(features_extractor="examples.conv1d_features:Nope")
    with pytest.raises(ConfigError, match="engine 'numpy' trains only the MLP policy over flat observations"):
        _agent(features_extractor="conv1d", engine="numpy")


def test_module_from_the_command_line_trains_and_evaluates_with_the_same_module(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}:{ROOT / 'tests'}"}
    train = [sys.executable, "-m", "ppokit", "train", "CartPole-v1", "--no-preset", "--run-dir", str(run), "--no-progress", "--quiet",
             "module=user_networks:cartpole_module", "n_envs=2", "n_steps=32", "minibatch_size=32", "total_steps=64", "eval_episodes=2"]
    subprocess.run(train, check=True, env=env, capture_output=True, cwd=tmp_path)
    refused = subprocess.run([sys.executable, "-m", "ppokit", "eval", str(run), "--episodes", "2"], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "module='user_networks:cartpole_module'" in refused.stderr
    done = subprocess.run([sys.executable, "-m", "ppokit", "eval", str(run), "--episodes", "2", "module=user_networks:cartpole_module"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "mean return" in done.stdout
