"""Dict and Tuple observations: one encoder per key, normalization of vector keys, predict on dicts, saving, learning."""

from collections import OrderedDict

import gymnasium as gym
import numpy as np
import pytest
from envs import DictWalkEnv

from ppokit import PPO
from ppokit.gym.envs.spaces import ObservationEncoder, space_from_json, space_to_json
from ppokit.gym.envs.toy_envs import DictTargetEnv
from ppokit.gym.evaluate import evaluate_policy
from ppokit.gym.presets import load_preset

MIXED = gym.spaces.Dict({
    "pos": gym.spaces.Box(-5.0, 5.0, (2,), np.float32),
    "kind": gym.spaces.Discrete(3, start=1),
    "flags": gym.spaces.MultiBinary(2),
    "action_mask": gym.spaces.MultiBinary(4),
})


class MixedDictEnv(gym.Env):
    """A Dict observation with a vector, a Discrete (start 1), a MultiBinary and an action mask; rewards action == kind - 1."""

    observation_space = MIXED
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        self.kind = int(self.np_random.integers(1, 4))
        return {"pos": self.np_random.normal(3.0, 1.0, 2).clip(-5, 5).astype(np.float32), "kind": self.kind,
                "flags": self.np_random.integers(0, 2, 2).astype(np.int8), "action_mask": np.ones(4, np.int8)}

    def step(self, action):
        reward = float(int(action) == self.kind - 1)
        self.t += 1
        return self._obs(), reward, False, self.t >= 8, {}


def test_encoder_packs_each_key_in_the_space_order_and_leaves_the_action_mask_out():
    encoder = ObservationEncoder(MIXED)  # gymnasium sorts a Dict's keys: flags, kind, pos
    obs = {"pos": np.array([0.5, -1.0], np.float32), "kind": 2, "flags": np.array([1, 0], np.int8), "action_mask": np.ones(4, np.int8)}
    row = encoder(obs)
    assert row.shape == (1, 2 + 3 + 2) and row.dtype == np.float32
    np.testing.assert_array_equal(row[0], [1, 0, 0, 1, 0, 0.5, -1.0])  # Discrete(3, start=1): 2 is the second one-hot column
    batch = {key: np.stack([value, value]) for key, value in obs.items()}
    np.testing.assert_array_equal(encoder(batch), np.repeat(row, 2, axis=0))
    assert encoder.is_single(obs) and not encoder.is_single(batch)
    np.testing.assert_array_equal(encoder.normalized_columns, [5, 6])  # only the vector key is normalized


def test_tuple_observation_is_packed_like_a_dict():
    space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Box(0, 1, (3,), np.float32)))
    encoder = ObservationEncoder(space)
    np.testing.assert_array_equal(encoder((1, np.array([0.1, 0.2, 0.3], np.float32)))[0], np.array([0, 1, 0.1, 0.2, 0.3], np.float32))


def test_dict_and_tuple_spaces_survive_json_with_their_key_order():
    space = gym.spaces.Dict(OrderedDict([("z", gym.spaces.Discrete(2)), ("a", gym.spaces.Box(0, 255, (36, 36, 1), np.uint8))]))
    again = space_from_json(space_to_json(space))
    assert list(again.spaces) == ["z", "a"] and again == space
    tuple_space = gym.spaces.Tuple((gym.spaces.MultiBinary(3), gym.spaces.Discrete(4)))
    assert space_from_json(space_to_json(tuple_space)) == tuple_space


def test_observation_normalization_covers_vector_keys_only():
    agent = PPO(MixedDictEnv, {"normalize_obs": True, "n_envs": 2, "n_steps": 64, "minibatch_size": 64, "total_steps": 256},
                verbose=False, progress_bar=False).learn()
    assert agent.policy_kind == "mlp" and agent.engine.name == "numpy"  # no image key: the fast path takes the packed row
    stats = agent.policy.obs_normalizer.stats
    assert stats.mean.shape == (2,) and np.all(np.abs(stats.mean - 3.0) < 0.5)  # the vector key's statistics
    row = agent.policy.prepare({"pos": np.array([3.0, 3.0], np.float32), "kind": 3, "flags": np.array([1, 1], np.int8),
                                "action_mask": np.ones(4, np.int8)})
    assert np.all(np.abs(row[0, 5:]) < 0.6)  # normalized
    np.testing.assert_array_equal(row[0, :5], [1, 1, 0, 0, 1])  # binary and one-hot columns untouched


def test_auto_picks_one_encoder_per_key_for_a_dict_with_an_image():
    agent = PPO("ppokit/DictTarget-v0", {"total_steps": 1024}, verbose=False, progress_bar=False)
    assert agent.policy_kind == "multi_input" and agent.engine.name == "torch"
    names = list(agent.policy.state_dict())
    assert any(name.startswith("module.features.images.0.body.0") for name in names)  # the image key's CNN
    assert "module.actor.0.weight" in names


def test_predict_takes_the_dict_as_the_env_returns_it_single_or_batched():
    agent = PPO("ppokit/DictTarget-v0", {"total_steps": 1024}, verbose=False, progress_bar=False)
    env = DictTargetEnv()
    obs, _ = env.reset(seed=0)
    action = agent.predict(obs, deterministic=True)
    assert np.ndim(action) == 0 and env.action_space.contains(int(action))
    envs = gym.vector.SyncVectorEnv([DictTargetEnv for _ in range(3)])
    batch, _ = envs.reset(seed=0)
    actions = agent.predict(batch, deterministic=True)
    assert actions.shape == (3,)
    singles = [agent.predict({key: value[i] for key, value in batch.items()}, deterministic=True) for i in range(3)]
    np.testing.assert_array_equal(actions, singles)


def test_dict_model_saves_loads_and_resumes_exactly(tmp_path):
    config = {"n_envs": 2, "n_steps": 32, "minibatch_size": 32, "n_epochs": 2, "total_steps": 64 * 4, "checkpoint_interval": 2,
              "tensorboard": False, "normalize_obs": True}
    full = PPO(MixedDictEnv, config, run_dir=tmp_path / "full", verbose=False, progress_bar=False, preset=None).learn()
    full.save(tmp_path / "model")
    loaded = PPO.load(tmp_path / "model")
    obs = {"pos": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), "kind": np.array([1, 3]), "flags": np.array([[0, 1], [1, 1]], np.int8),
           "action_mask": np.ones((2, 4), np.int8)}
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True), full.predict(obs, deterministic=True))
    assert loaded.observation_space == MIXED

    # a run of DictWalkEnv (whose episodes end at each rollout's end) resumed from its checkpoint ends bitwise equal
    walk = config | {"n_steps": 16, "minibatch_size": 16}
    full = PPO(DictWalkEnv, walk, run_dir=tmp_path / "walk", verbose=False, progress_bar=False, preset=None).learn()
    resumed = PPO.load(tmp_path / "walk" / "checkpoints" / "update_000000006", env=DictWalkEnv, run_dir=tmp_path / "resumed",
                       verbose=False, progress_bar=False).learn()
    assert resumed.num_updates == full.num_updates == 8
    for name, array in full.policy.state_dict().items():
        np.testing.assert_array_equal(resumed.policy.state_dict()[name], array, err_msg=name)


def test_image_dict_model_saves_and_loads(tmp_path):
    agent = PPO("ppokit/DictTarget-v0", {"total_steps": 1024, "n_steps": 64, "n_envs": 8, "minibatch_size": 256}, verbose=False,
                progress_bar=False).learn()
    agent.save(tmp_path / "model")
    loaded = PPO.load(tmp_path / "model")
    envs = gym.vector.SyncVectorEnv([DictTargetEnv for _ in range(4)])
    batch, _ = envs.reset(seed=3)
    np.testing.assert_array_equal(loaded.predict(batch, deterministic=True), agent.predict(batch, deterministic=True))


@pytest.mark.learning
def test_dict_env_with_image_vector_and_discrete_keys_learns():
    """DictTarget pays 1 per step only when the action reads all three keys (10 per episode; chance: 5)."""
    agent = PPO("ppokit/DictTarget-v0", load_preset("ppokit-DictTarget-v0")[1], verbose=False, progress_bar=False).learn()
    assert float(np.mean(evaluate_policy(agent, episodes=20))) >= 9.0
