"""Invalid-action masks: zero probability, no NaN, stored with the rollout, respected by predict and evaluation; learning."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from envs import DictWalkEnv, InfoMaskEnv, MaskRecordingEnv, MultiDiscreteMaskEnv

from ppokit import PPO
from ppokit.errors import ConfigError, EnvError, InputError
from ppokit.gym.evaluate import evaluate_policy
from ppokit.gym.policies.distributions import Categorical, MultiCategorical, mask_logits
from ppokit.gym.policies.torch_distributions import log_prob_entropy
from ppokit.gym.presets import load_preset

SMALL = {"n_envs": 2, "n_steps": 32, "minibatch_size": 32, "n_epochs": 2, "total_steps": 64, "tensorboard": False}


def _agent(env, **overrides):
    return PPO(env, SMALL | overrides, verbose=False, progress_bar=False, preset=None)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_masked_actions_have_zero_probability_and_the_rest_renormalize(engine):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4, 6)).astype(np.float32)
    mask = np.array([[1, 0, 1, 0, 1, 1], [0, 0, 0, 1, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 0, 0, 1]], bool)
    actions = np.array([4, 3, 0, 5])
    dist = Categorical(gym.spaces.Discrete(6))
    if engine == "numpy":
        logprob, entropy, _ = dist.log_prob_entropy(mask_logits(logits, mask), actions)
    else:
        logprob, entropy = (x.numpy() for x in log_prob_entropy(dist, torch.from_numpy(logits), torch.from_numpy(actions), None, torch.from_numpy(mask)))
    for row in range(4):
        valid = logits[row][mask[row]]
        probs = np.exp(valid - valid.max()) / np.exp(valid - valid.max()).sum()
        assert logprob[row] == pytest.approx(np.log(probs[list(np.flatnonzero(mask[row])).index(actions[row])]), abs=1e-5)
        assert entropy[row] == pytest.approx(-(probs * np.log(probs)).sum(), abs=1e-5)
    # one valid action left: certain, no spread, and nothing is NaN
    assert logprob[1] == pytest.approx(0.0, abs=1e-6) and entropy[1] == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(logprob).all() and np.isfinite(entropy).all()
    samples = dist.sample(mask_logits(np.repeat(logits[:1], 5000, 0), np.repeat(mask[:1], 5000, 0)), rng)
    assert set(np.unique(samples)) <= {0, 2, 4, 5}


def test_gradient_through_a_mask_is_finite_and_zero_on_invalid_logits():
    logits = torch.randn(3, 5, requires_grad=True)
    mask = torch.tensor([[True, False, False, False, False], [True, True, False, False, True], [False, False, False, False, True]])
    dist = Categorical(gym.spaces.Discrete(5))
    logprob, entropy = log_prob_entropy(dist, logits, torch.tensor([0, 4, 4]), None, mask)
    (logprob.sum() + entropy.sum()).backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.all(logits.grad[~mask] == 0)
    assert torch.all(logits.grad[0] == 0) and torch.all(logits.grad[2] == 0)  # one valid action: nothing to learn


def test_multidiscrete_mask_applies_to_each_dimension():
    dist = MultiCategorical(gym.spaces.MultiDiscrete([3, 4]))
    mask = np.zeros((1000, 7), bool)
    mask[:, 1] = True
    mask[:, 3 + 2] = mask[:, 3 + 3] = True
    actions = dist.sample(mask_logits(np.zeros((1000, 7), np.float32), mask), np.random.default_rng(0))
    assert set(actions[:, 0]) == {1} and set(actions[:, 1]) == {2, 3}
    logprob, entropy, _ = dist.log_prob_entropy(mask_logits(np.zeros((1, 7), np.float32), mask[:1]), np.array([[1, 2]]))
    assert logprob[0] == pytest.approx(np.log(0.5)) and entropy[0] == pytest.approx(np.log(2))


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_training_takes_only_valid_actions_and_stores_each_mask_with_its_step(engine):
    InfoMaskEnv.received_valid.clear()
    agent = _agent(MaskRecordingEnv, engine=engine)
    seen = {}
    original_update = agent.engine.update

    def spy(samples, settings, order):
        seen.update(samples)
        return original_update(samples, settings, order)

    agent.engine.update = spy
    agent.learn()
    assert len(InfoMaskEnv.received_valid) == 64 and all(InfoMaskEnv.received_valid)
    masks, actions = seen["action_masks"], seen["actions"]
    assert masks.shape == (64, 5) and masks.sum(1).tolist() == [1] * 64  # one valid action per step, as the env gave it
    assert masks[np.arange(64), actions].all()
    assert np.allclose(seen["logprobs"], 0.0, atol=1e-5)  # each action scored under its own mask: certain


def test_masks_from_info_and_from_an_observation_key():
    InfoMaskEnv.received_valid.clear()
    agent = _agent(InfoMaskEnv).learn()
    assert agent.collector.mask_reader.source == "info" and all(InfoMaskEnv.received_valid)
    MultiDiscreteMaskEnv.received_valid.clear()
    agent = _agent(MultiDiscreteMaskEnv).learn()
    assert agent.collector.mask_reader.source == "obs" and len(MultiDiscreteMaskEnv.received_valid) == 64
    assert all(MultiDiscreteMaskEnv.received_valid)


def test_async_envs_with_and_without_masks():
    """Looking for an action_masks() method must not break an AsyncVectorEnv whose envs have none."""
    agent = _agent(MaskRecordingEnv, vec_env="async").learn()
    assert agent.collector.mask_reader.source == "method" and agent.collector.action_masks.sum(-1).max() == 1
    agent.close()
    agent = _agent("CartPole-v1", vec_env="async").learn()
    assert agent.collector.mask_reader is None and agent.global_step == 64
    agent.close()


def test_taxi_masks_come_from_info():
    agent = _agent("Taxi-v4")
    agent.learn()
    assert agent.collector.mask_reader.source == "info"
    rollout_masks = agent.collector.action_masks
    assert rollout_masks.shape == (32, 2, 6) and not rollout_masks.all()  # Taxi forbids moving into walls


def test_predict_respects_a_given_mask_and_the_observation_key():
    agent = _agent(MaskRecordingEnv)
    obs = np.random.default_rng(0).uniform(0, 1, (200, 5)).astype(np.float32)
    only_three = np.zeros((200, 5), bool)
    only_three[:, 3] = True
    assert set(agent.predict(obs, action_mask=only_three)) == {3}
    assert int(agent.predict(obs[0], action_mask=only_three[0], deterministic=True)) == 3
    md = _agent(MultiDiscreteMaskEnv)
    observation = {"x": np.zeros(2, np.float32), "action_mask": np.array([0, 0, 1, 1, 0, 0, 0], np.int8)}
    assert [tuple(md.predict(observation)) for _ in range(20)] == [(2, 0)] * 20


def test_evaluation_passes_the_env_masks():
    InfoMaskEnv.received_valid.clear()
    agent = _agent(MaskRecordingEnv)  # untrained: without the masks it would pick a wrong action 4 times in 5
    returns = evaluate_policy(agent, episodes=6, deterministic=False)
    assert returns == [10.0] * 6 and all(InfoMaskEnv.received_valid)


def test_a_mask_with_no_valid_action_names_the_step():
    with pytest.raises(EnvError, match=r"copy \d\) gave an action mask with no valid action at global step \d+: \[0, 0, 0, 0, 0\]"):
        _agent(lambda: MaskRecordingEnv(empty_at=3)).learn()
    agent = _agent(MaskRecordingEnv)
    with pytest.raises(InputError, match=r"action_mask of observation 1 allows no action"):
        agent.predict(np.zeros((2, 5), np.float32), action_mask=np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]))
    with pytest.raises(InputError, match=r"action_mask has shape \(3,\); expected 5 entries"):
        agent.predict(np.zeros(5, np.float32), action_mask=np.ones(3))


def test_mask_settings_on_and_off_and_unsupported_action_spaces():
    with pytest.raises(ConfigError, match=r"action_masks is 'on', but environment 'CartPole-v1' gives no action mask"):
        _agent("CartPole-v1", action_masks="on").learn()
    agent = _agent(MaskRecordingEnv, action_masks="off")
    agent.learn(64)
    assert agent.collector.mask_reader is None

    class BoxMaskEnv(MaskRecordingEnv):
        action_space = gym.spaces.Box(-1, 1, (2,))

    with pytest.raises(ConfigError, match=r"gives action masks \(from its method\).*neither Discrete nor MultiDiscrete.*action_masks: off"):
        _agent(BoxMaskEnv).learn()
    with pytest.raises(ConfigError, match=r"action_masks must be one of"):
        PPO("CartPole-v1", {"action_masks": "yes"})


def test_masked_model_saves_loads_and_resumes_exactly(tmp_path):
    config = {"checkpoint_interval": 2, "total_steps": 64 * 4, "engine": "torch"}
    full = _agent(MaskRecordingEnv, **config)
    full.run_dir = tmp_path / "full"
    full.learn()
    full.save(tmp_path / "model")
    loaded = PPO.load(tmp_path / "model")
    rng = np.random.default_rng(1)
    obs = rng.uniform(0, 1, (200, 5)).astype(np.float32)
    mask = np.zeros((200, 5), bool)  # three valid actions per row: the choice among them is the policy's
    for row in mask:
        row[rng.choice(5, 3, replace=False)] = True
    chosen = loaded.predict(obs, action_mask=mask, deterministic=True)
    assert mask[np.arange(200), chosen].all()
    np.testing.assert_array_equal(chosen, full.predict(obs, action_mask=mask, deterministic=True))
    untrained = _agent(MaskRecordingEnv, **config).policy.state_dict()
    for name, array in full.policy.state_dict().items():  # the loaded weights are the trained ones, which training moved from the start
        np.testing.assert_array_equal(loaded.policy.state_dict()[name], array, err_msg=name)
    assert any(not np.array_equal(untrained[name], array) for name, array in full.policy.state_dict().items())
    # DictWalkEnv masks 'stay' on even steps and its episodes end with each rollout: a resumed run ends bitwise equal
    walk = SMALL | config | {"n_steps": 16, "minibatch_size": 16, "total_steps": 32 * 4}
    full = PPO(DictWalkEnv, walk, run_dir=tmp_path / "walk", verbose=False, progress_bar=False, preset=None).learn()
    resumed = PPO.load(tmp_path / "walk" / "checkpoints" / "update_000000002", env=DictWalkEnv, run_dir=tmp_path / "resumed",
                       verbose=False, progress_bar=False).learn()
    assert resumed.collector.mask_reader.source == "obs" and resumed.num_updates == 4
    for name, array in full.policy.state_dict().items():
        np.testing.assert_array_equal(resumed.policy.state_dict()[name], array, err_msg=name)


@pytest.mark.learning
def test_masks_learn_far_faster_than_no_masks():
    """MaskedChoice: 4 of 64 actions valid at each step, an invalid one ends the episode (best return 20)."""
    config = load_preset("ppokit-MaskedChoice-v0")[1]
    masked = PPO("ppokit/MaskedChoice-v0", config, verbose=False, progress_bar=False).learn()
    unmasked = PPO("ppokit/MaskedChoice-v0", config | {"action_masks": "off"}, verbose=False, progress_bar=False).learn()
    with_masks = float(np.mean(evaluate_policy(masked, episodes=20)))
    without = float(np.mean(evaluate_policy(unmasked, episodes=20)))
    assert with_masks >= 18.0 and without <= 5.0, (with_masks, without)
