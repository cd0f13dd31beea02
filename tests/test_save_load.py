import json

import gymnasium as gym
import numpy as np
import pytest

from ppokit import PPO
from ppokit.errors import CheckpointError


def _trained(env_id="Pendulum-v1", **overrides):
    config = {"n_envs": 4, "n_steps": 64, "total_steps": 512, "normalize_obs": True, "normalize_reward": True, "seed": 3} | overrides
    agent = PPO(env_id, config, verbose=False, progress_bar=False)
    agent.learn()
    return agent


def _observations(env_id, n=100, seed=0):
    env = gym.make(env_id)
    env.observation_space.seed(seed)
    return np.stack([env.observation_space.sample() for _ in range(n)])


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_save_load_gives_identical_deterministic_actions(tmp_path, env_id):
    agent = _trained(env_id)
    assert float(agent.policy.obs_normalizer.stats.count) > 500  # statistics really moved
    agent.save(tmp_path)
    loaded = PPO.load(tmp_path)
    obs = _observations(env_id)
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True), loaded.predict(obs, deterministic=True))
    for name, array in agent.policy.state_dict().items():
        np.testing.assert_array_equal(array, loaded.policy.state_dict()[name], err_msg=name)
    assert loaded.config == agent.config
    assert loaded.env_id == env_id


def test_saved_files_are_safetensors_and_json(tmp_path):
    _trained().save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["format"] == "ppokit.model" and meta["config"]["normalize_obs"] is True
    assert meta["observation_space"]["type"] == "Box"


def test_predict_single_observation_matches_batch(tmp_path):
    agent = _trained("CartPole-v1")
    obs = _observations("CartPole-v1", n=5)
    batch = agent.predict(obs, deterministic=True)
    singles = [agent.predict(o, deterministic=True) for o in obs]
    assert list(batch) == [int(s) for s in singles]


def test_load_refuses_foreign_and_corrupt_files(tmp_path):
    agent = _trained()
    agent.save(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="safetensors"):
        PPO.load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a ppokit model"):
        PPO.load(tmp_path)
    with pytest.raises(CheckpointError, match="not a ppokit model folder"):
        PPO.load(tmp_path / "missing")


def test_load_refuses_shapes_that_disagree_with_config(tmp_path):
    _trained().save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["config"]["hidden_sizes"] = [32, 32]
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape"):
        PPO.load(tmp_path)


def test_same_seed_gives_identical_losses():
    def losses(seed):
        rows = []
        config = {"n_envs": 4, "n_steps": 64, "total_steps": 1024, "seed": seed}
        PPO("CartPole-v1", config, verbose=False, progress_bar=False).learn(
            callback=lambda m: rows.append((m["losses/policy_loss"], m["losses/value_loss"], m["losses/approx_kl"]))
        )
        return rows

    first, second, other = losses(7), losses(7), losses(8)
    assert len(first) == 4
    assert first == second
    assert first != other


def test_building_training_and_loading_leave_the_global_random_states_alone(tmp_path):
    import random

    random.seed(123)
    np.random.seed(456)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    config = {"n_envs": 2, "n_steps": 32, "total_steps": 128, "minibatch_size": 32, "seed": 7}
    agent = PPO("CartPole-v1", config, run_dir=tmp_path / "run", verbose=False, progress_bar=False)
    agent.learn()
    agent.save(tmp_path / "model")
    PPO.load(tmp_path / "model")
    PPO.load(tmp_path / "run")  # a checkpoint, with every random stream of the agent
    assert random.getstate() == python_state
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]


def test_agent_state_dict_round_trip_continues_identically():
    config = {"n_envs": 2, "n_steps": 64, "total_steps": 256, "seed": 5, "normalize_obs": True}
    trained = PPO("Pendulum-v1", config, verbose=False, progress_bar=False).learn()
    fresh = PPO("Pendulum-v1", config | {"seed": 99}, verbose=False, progress_bar=False)
    fresh.load_state_dict(trained.state_dict())
    copied = fresh.state_dict()
    for part in ("model", "optimizer"):
        original = trained.state_dict()[part]
        assert sorted(copied[part]) == sorted(original)
        for name, array in original.items():
            np.testing.assert_array_equal(copied[part][name], array, err_msg=f"{part}/{name}")
    assert copied["training"]["num_updates"] == trained.num_updates == 2
    assert copied["training"]["rng"]["minibatch_order"] == trained.state_dict()["training"]["rng"]["minibatch_order"]
    obs = _observations("Pendulum-v1")
    np.testing.assert_array_equal(fresh.predict(obs), trained.predict(obs))  # the predict stream was copied too

    # training continues from the state alone: two agents of other seeds given it end with the same weights
    other = PPO("Pendulum-v1", config | {"seed": 7}, verbose=False, progress_bar=False)
    other.load_state_dict(trained.state_dict())
    before = trained.state_dict()["model"]
    fresh.learn(total_steps=256)
    other.learn(total_steps=256)
    assert fresh.num_updates == other.num_updates == 4
    for name, array in fresh.state_dict()["model"].items():
        np.testing.assert_array_equal(other.state_dict()["model"][name], array, err_msg=name)
    assert any(not np.array_equal(fresh.state_dict()["model"][name], before[name]) for name in before)  # and it did train


def test_agent_load_state_dict_refuses_another_architecture():
    small = PPO("Pendulum-v1", {"hidden_sizes": [8]}, verbose=False, progress_bar=False)
    large = PPO("Pendulum-v1", {"hidden_sizes": [16]}, verbose=False, progress_bar=False)
    with pytest.raises(CheckpointError, match="actor.0.weight"):
        small.load_state_dict(large.state_dict())
