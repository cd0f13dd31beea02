"""Shipped presets are valid, and the Python API merges them as `ppokit train` does."""

import pytest

from ppokit import PPO, PPOConfig
from ppokit.errors import ConfigError
from ppokit.gym.envs.make import make_env
from ppokit.gym.presets import list_presets, load_preset


@pytest.mark.parametrize("name", sorted(list_presets()))
def test_every_preset_is_a_valid_config_for_an_env_that_exists(name):
    env_id, values = load_preset(name)
    config = PPOConfig.from_dict(values, source=f"preset {name}")
    assert config.total_steps >= config.rollout_size
    env = make_env(env_id, config.env_kwargs)  # (as training makes it: ALE ids registered, ppokit's own envs too)
    env.close()
    assert list_presets()[name].get("notes"), f"preset {name} must say where its values come from"


def _agent(env_id, config, **kwargs):
    return PPO(env_id, config, verbose=False, progress_bar=False, **kwargs)


def test_a_dict_is_applied_over_the_env_preset_like_the_command_line():
    agent = _agent("CartPole-v1", {"learning_rate": 5e-3})
    preset = load_preset("CartPole-v1")[1]
    assert agent.preset_name == "CartPole-v1"
    assert agent.config.learning_rate == 5e-3
    assert (agent.config.gamma, agent.config.n_steps, agent.config.n_epochs) == (preset["gamma"], preset["n_steps"], preset["n_epochs"])


def test_preset_none_starts_from_the_defaults_and_a_named_preset_replaces_the_env_one():
    defaults = _agent("CartPole-v1", {"total_steps": 4096}, preset=None)
    assert defaults.preset_name is None
    assert defaults.config.to_dict() == PPOConfig(total_steps=4096).to_dict()
    cleanrl = _agent("CartPole-v1", {}, preset="CartPole-v1-cleanrl")
    # keys that CartPole-v1-cleanrl leaves out come from the defaults, not from the CartPole-v1 preset
    assert cleanrl.config.clip_schedule == "constant" and cleanrl.config.n_steps == 128


def test_a_ppoconfig_is_used_as_given():
    config = PPOConfig(n_envs=2, n_steps=64, total_steps=128)
    assert _agent("CartPole-v1", config).config.to_dict() == config.to_dict()
    with pytest.raises(ConfigError, match="a PPOConfig is used as given"):
        _agent("CartPole-v1", config, preset="CartPole-v1")


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown preset 'CartPole-v2'.*CartPole-v1"):
        _agent("CartPole-v1", {}, preset="CartPole-v2")
