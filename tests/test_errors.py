"""Bad input gets a clear error naming what was wrong and what was expected."""

import gymnasium as gym
import pytest
from envs import DictObsEnv, NaNAfterEnv

from ppokit import PPO, PPOConfig
from ppokit.cli import main
from ppokit.errors import ConfigError, EnvError, UnsupportedSpaceError


def test_unknown_env_id_suggests_close_ids():
    with pytest.raises(EnvError, match=r"unknown environment id 'CartPol-v1'.*'CartPole-v1'"):
        PPO("CartPol-v1")


def test_unsupported_observation_space_names_space_and_supported_ones():
    class TextObsEnv(DictObsEnv):
        observation_space = gym.spaces.Text(5)

    with pytest.raises(UnsupportedSpaceError, match=r"observation space Text.*not supported.*Box, Discrete, MultiBinary, and Dict or Tuple"):
        PPO(TextObsEnv)


def test_nested_dict_observation_names_the_key():
    class NestedDictEnv(DictObsEnv):
        observation_space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,)), "inner": gym.spaces.Dict({"b": gym.spaces.Discrete(3)})})

    with pytest.raises(UnsupportedSpaceError, match=r"its part 'inner' is Dict.*must be Box, Discrete or MultiBinary"):
        PPO(NestedDictEnv)


def test_unsupported_action_space():
    class TupleActionEnv(DictObsEnv):
        observation_space = gym.spaces.Box(-1, 1, (2,))
        action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3)))

    with pytest.raises(UnsupportedSpaceError, match=r"action space Tuple.*Discrete, Box, MultiDiscrete, MultiBinary"):
        PPO(TupleActionEnv)


def test_unknown_config_key_suggests_nearest():
    with pytest.raises(ConfigError, match=r"unknown config key 'learning_rat'; did you mean 'learning_rate'\?"):
        PPOConfig.from_dict({"learning_rat": 1e-3})


def test_negative_clip_range():
    with pytest.raises(ConfigError, match=r"clip_range must be a positive number, got -0.2"):
        PPOConfig.from_dict({"clip_range": -0.2})


def test_wrong_value_type_names_key():
    with pytest.raises(ConfigError, match=r"n_envs must be an integer, got 'eight'"):
        PPOConfig.from_dict({"n_envs": "eight"})


def test_step_budget_smaller_than_one_rollout():
    with pytest.raises(ConfigError, match=r"total_steps=100 is smaller than one rollout \(n_envs \* n_steps = 8 \* 32 = 256\)"):
        PPOConfig.from_dict({"n_envs": 8, "n_steps": 32, "total_steps": 100})
    agent = PPO("CartPole-v1", {"n_envs": 8, "n_steps": 32, "total_steps": 256}, verbose=False, progress_bar=False)
    with pytest.raises(ConfigError, match="smaller than one rollout"):
        agent.learn(total_steps=10)


def test_env_returning_nan_observation():
    agent = PPO(lambda: NaNAfterEnv(nan_at=5), {"n_envs": 2, "n_steps": 16, "total_steps": 64, "minibatch_size": 16}, verbose=False, progress_bar=False)
    with pytest.raises(EnvError, match=r"returned a non-finite observation from step\(\) at global step 8"):
        agent.learn()


def test_env_raising_in_step_names_env_and_step():
    class Exploding(NaNAfterEnv):
        def step(self, action):
            raise RuntimeError("boom")

    agent = PPO(Exploding, {"n_envs": 2, "n_steps": 16, "total_steps": 64, "minibatch_size": 16}, verbose=False, progress_bar=False)
    with pytest.raises(EnvError, match=r"'Exploding' raised RuntimeError in step\(\) at global step 0: boom"):
        agent.learn()


def test_factory_returning_non_env():
    with pytest.raises(EnvError, match="expected a gymnasium.Env"):
        PPO(lambda: 42)


def test_cli_reports_bad_input_without_traceback(capsys, tmp_path):
    assert main(["train", "CartPol-v1", "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown environment id 'CartPol-v1'" in capsys.readouterr().err
    assert main(["train", "CartPole-v1", "--run-dir", str(tmp_path / "r"), "clip_range=-1"]) == 2
    assert "clip_range must be a positive number" in capsys.readouterr().err
    assert main(["train", "CartPole-v1", "--run-dir", str(tmp_path / "r"), "lr=1"]) == 2
    assert "unknown config key 'lr'" in capsys.readouterr().err
    assert main(["train", "CartPole-v1", "--preset", "CartPole-v2"]) == 2
    assert "unknown preset 'CartPole-v2'; did you mean 'CartPole-v1'?" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["clip_range_vf", "max_grad_norm", "target_kl"])
def test_update_fields_are_validated_alike_in_both_front_ends(key):
    from ppokit.gym.config import PPOConfig
    from ppokit.lm.config import LMPPOConfig

    messages = []
    for config_class in (PPOConfig, LMPPOConfig):
        with pytest.raises(ConfigError, match=f"{key} must be a positive number or null") as caught:
            config_class.from_dict({key: 0})
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


def test_update_settings_carry_every_update_field():
    from ppokit.core.settings import UpdateFields
    from ppokit.gym.config import PPOConfig
    from ppokit.lm.config import LMPPOConfig

    gym_config = PPOConfig.from_dict({"n_epochs": 3, "clip_range_vf": 0.3, "target_kl": 0.02})
    settings = gym_config.update_settings(clip_range=0.1)
    assert (settings.n_epochs, settings.clip_range, settings.clip_range_vf, settings.target_kl) == (3, 0.1, 0.3, 0.02)
    lm_settings = LMPPOConfig.from_dict({"grad_accum_steps": 2}).update_settings(grad_accum_steps=2)
    assert (lm_settings.n_epochs, lm_settings.vf_coef, lm_settings.normalize_advantage, lm_settings.grad_accum_steps) == (4, 0.1, False, 2)
    assert issubclass(PPOConfig, UpdateFields) and issubclass(LMPPOConfig, UpdateFields)
