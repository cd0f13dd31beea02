"""Image observations: the Nature CNN, its choice by 'auto', saving, loading, resuming, and a module of your own."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from envs import PixelCatchEnv
from torch import nn

from ppokit import PPO
from ppokit.errors import ConfigError
from ppokit.gym.evaluate import evaluate_policy
from ppokit.gym.policies.features import FrameFeatures
from ppokit.gym.policies.networks import ActorCriticNetwork
from ppokit.gym.policies.torch_policy import TorchPolicy

CATCH = {"n_envs": 8, "n_steps": 64, "minibatch_size": 128, "n_epochs": 4, "learning_rate": 1e-3, "ent_coef": 0.01, "tensorboard": False}
TINY = CATCH | {"n_envs": 2, "n_steps": 16, "minibatch_size": 16, "n_epochs": 2}


def _catch():
    return PixelCatchEnv(size=10, cell=6)  # 60x60x1 frames


def test_image_observations_get_the_cnn_and_the_torch_engine():
    agent = PPO(_catch, TINY | {"total_steps": 32}, verbose=False, progress_bar=False)
    assert agent.policy_kind == "cnn" and agent.engine.name == "torch"
    assert isinstance(agent.policy, TorchPolicy) and isinstance(agent.policy.module, ActorCriticNetwork)
    assert isinstance(agent.policy.module.features, FrameFeatures) and len(agent.policy.module.actor) == 1  # one linear layer per head
    assert agent.policy.obs_dtype == np.uint8 and agent.policy.obs_shape == (60, 60, 1)
    vector = PPO("CartPole-v1", {"n_envs": 2, "n_steps": 16, "minibatch_size": 16, "total_steps": 32}, verbose=False, progress_bar=False)
    assert vector.policy_kind == "mlp" and vector.engine.name == "numpy"


def test_rollout_keeps_frames_as_uint8():
    agent = PPO(_catch, TINY | {"total_steps": 32}, verbose=False, progress_bar=False)
    agent.learn()
    assert agent.collector.obs.dtype == np.uint8 and agent.collector.obs.shape == (16, 2, 60, 60, 1)
    assert agent.collector.obs.max() == 255  # raw frames, not scaled


def test_numpy_engine_with_the_cnn_is_a_clear_error():
    with pytest.raises(ConfigError, match="engine 'numpy' trains only the MLP policy"):
        PPO(_catch, TINY | {"engine": "numpy", "total_steps": 32}, verbose=False, progress_bar=False)
    with pytest.raises(ConfigError, match="policy 'cnn' needs image observations"):
        PPO("CartPole-v1", {"policy": "cnn", "n_envs": 2, "n_steps": 16, "minibatch_size": 16, "total_steps": 32}, verbose=False, progress_bar=False)
    with pytest.raises(ConfigError, match="normalize_obs applies to vector observations"):
        PPO(_catch, TINY | {"normalize_obs": True, "total_steps": 32}, verbose=False, progress_bar=False)


def test_frames_too_small_for_the_nature_cnn_are_a_clear_error():
    with pytest.raises(ConfigError, match="at least 36x36"):
        PPO(lambda: PixelCatchEnv(size=5, cell=4), TINY | {"total_steps": 32}, verbose=False, progress_bar=False)


def test_channel_first_and_channel_last_frames_give_the_same_output():
    torch.manual_seed(0)
    last = ActorCriticNetwork(FrameFeatures((60, 60, 3)), 512, [], "tanh", 4)
    first = ActorCriticNetwork(FrameFeatures((3, 60, 60)), 512, [], "tanh", 4)
    first.load_state_dict(last.state_dict())
    frames = torch.randint(0, 256, (5, 60, 60, 3), dtype=torch.uint8)
    for a, b in zip(last(frames), first(frames.permute(0, 3, 1, 2).contiguous())):
        torch.testing.assert_close(a, b)


def test_cnn_save_load_predict(tmp_path):
    agent = PPO(_catch, TINY | {"total_steps": 64}, verbose=False, progress_bar=False).learn()
    agent.save(tmp_path)
    loaded = PPO.load(tmp_path)
    assert loaded.policy_kind == "cnn"
    env = _catch()
    frames = np.stack([env.reset(seed=s)[0] for s in range(20)])
    np.testing.assert_array_equal(agent.predict(frames, deterministic=True), loaded.predict(frames, deterministic=True))
    assert loaded.predict(frames[0], deterministic=True).shape == ()  # one observation -> one action
    for name, array in agent.policy.state_dict().items():
        np.testing.assert_array_equal(loaded.policy.state_dict()[name], array, err_msg=name)


def _fixed_catch():
    return PixelCatchEnv(size=10, cell=6, fixed_start=True)


def test_resumed_cnn_run_ends_with_identical_weights(tmp_path):
    # 18-step rollouts hold two whole 9-step episodes, so the envs a resume restarts lose nothing
    config = TINY | {"n_steps": 18, "minibatch_size": 18, "total_steps": 36 * 4, "checkpoint_interval": 2, "lr_schedule": "linear"}
    full = PPO(_fixed_catch, config, run_dir=tmp_path / "full", verbose=False, progress_bar=False).learn()
    middle = tmp_path / "full" / "checkpoints" / "update_000000002"
    resumed = PPO.load(middle, env=_fixed_catch, run_dir=tmp_path / "resumed", verbose=False, progress_bar=False)
    resumed.learn()
    assert resumed.num_updates == full.num_updates == 4
    for name, array in full.policy.state_dict().items():
        np.testing.assert_array_equal(resumed.policy.state_dict()[name], array, err_msg=name)


class TwoPixelModule(nn.Module):
    """A user module: looks at the ball's and the paddle's columns through one linear layer."""

    def __init__(self):
        super().__init__()
        self.actor = nn.Linear(60, 3)
        self.critic = nn.Linear(60, 1)

    def forward(self, frames):
        columns = frames.float().amax(dim=(1, 3)) / 255.0  # [B, 60]: which columns hold something
        return self.actor(columns), self.critic(columns).squeeze(-1)


def test_a_module_of_your_own_trains_saves_and_loads(tmp_path):
    agent = PPO(_catch, TINY | {"total_steps": 64}, module=TwoPixelModule(), verbose=False, progress_bar=False)
    before = {name: p.detach().clone() for name, p in agent.policy.module.named_parameters()}
    agent.learn()
    assert agent.policy_kind == "custom"
    assert any(not torch.equal(p, before[name]) for name, p in agent.policy.module.named_parameters())
    agent.save(tmp_path)
    with pytest.raises(ConfigError, match="module of your own"):
        PPO.load(tmp_path)
    loaded = PPO.load(tmp_path, module=TwoPixelModule())
    frames = np.stack([_catch().reset(seed=s)[0] for s in range(10)])
    np.testing.assert_array_equal(agent.predict(frames, deterministic=True), loaded.predict(frames, deterministic=True))


@pytest.mark.learning
def test_cnn_learns_pixel_catch_and_an_mlp_on_the_same_pixels_does_not():
    """20k steps: the CNN catches (almost) every ball; the MLP on the same raw pixels stays near chance."""
    results = {}
    for policy in ("cnn", "mlp"):
        agent = PPO(_catch, CATCH | {"policy": policy, "total_steps": 20_000, "seed": 0}, verbose=False, progress_bar=False).learn()
        results[policy] = float(np.mean(evaluate_policy(agent, episodes=50)))
    assert results["cnn"] >= 0.9, results
    assert results["mlp"] <= results["cnn"] - 0.5, results


def test_image_space_detection():
    from ppokit.gym.envs.spaces import is_image_space

    assert is_image_space(gym.spaces.Box(0, 255, (84, 84, 3), np.uint8))
    assert is_image_space(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))
    assert not is_image_space(gym.spaces.Box(0, 1, (84, 84, 3), np.float32))
    assert not is_image_space(gym.spaces.Box(0, 255, (84, 84), np.uint8))
