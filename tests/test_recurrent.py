"""Recurrent policies: memory carried and reset, whole-sequence minibatches, truncation bootstrapping, predict with state, learning."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from envs import ConstantRewardEnv, DictWalkEnv

from ppokit import PPO, PPOConfig
from ppokit.errors import ConfigError, InputError
from ppokit.gym.evaluate import evaluate_policy
from ppokit.gym.presets import load_preset
from ppokit.gym.rollout import sequence_order

SMALL = {"policy": "lstm", "lstm_hidden_size": 16, "n_envs": 4, "n_steps": 16, "minibatch_size": 32, "n_epochs": 2, "total_steps": 64 * 2,
         "tensorboard": False}


def _agent(env="ppokit/CueRecall-v0", **overrides):
    return PPO(env, SMALL | overrides, verbose=False, progress_bar=False, preset=None)


@pytest.mark.parametrize("shared, length", [(True, 16), (False, 16), (True, 4), (False, 4)])
def test_sequence_evaluation_equals_stepping_with_resets_at_episode_starts(shared, length):
    """Whole 16-step sequences, or chunks of 4 replayed from the state stored at their first step: the same values as acting."""
    agent = _agent(lstm_shared=shared, lstm_sequence_length=length)
    policy, module = agent.policy, agent.policy.module
    steps, envs = 16, 3
    rng = np.random.default_rng(0)
    obs = rng.uniform(0, 1, (steps, envs, 3)).astype(np.float32)
    starts = np.zeros((steps, envs), np.float32)
    starts[0] = 1
    starts[5, 1] = starts[11, 2] = starts[12, 0] = 1
    initial = rng.normal(0, 0.5, (envs, policy.state_size)).astype(np.float32)
    # step by step, as the rollout does: zero a copy's memory where its episode starts
    state, stepped_values, states = initial.copy(), [], []
    state[starts[0] > 0] = 0.0
    for t in range(steps):
        state[starts[t] > 0] = 0.0
        states.append(state.copy())
        stepped_values.append(policy.value(obs[t], state))
        _, state = policy.act(obs[t], rng, deterministic=True, state=state)
    # chunks in a random order, chunk-major rows, each from its first step's stored state
    order = sequence_order(np.random.default_rng(1), steps, envs, length)
    flat = lambda a: torch.from_numpy(np.ascontiguousarray(a.reshape(steps * envs, *a.shape[2:])[order]))  # noqa: E731
    params, values = module.evaluate_sequences(flat(obs), flat(starts), flat(np.stack(states)))
    np.testing.assert_allclose(values.detach().numpy(), np.stack(stepped_values).reshape(-1)[order], atol=1e-5)
    assert policy.state_size == 2 * 16 * (1 if shared else 2)


def test_sequence_order_keeps_each_chunk_whole():
    order = sequence_order(np.random.default_rng(0), num_steps=4, num_envs=3)
    assert sorted(order) == list(range(12))
    for sequence in order.reshape(3, 4):  # whole rollouts: one copy's steps 0..3 in a row
        assert np.all(np.diff(sequence) == 3) and sequence[0] < 3
    chunks = sequence_order(np.random.default_rng(0), num_steps=8, num_envs=3, length=2).reshape(12, 2)
    assert sorted(chunks.reshape(-1)) == list(range(24))
    assert all(b - a == 3 for a, b in chunks)  # two consecutive steps of one copy
    assert len({(a % 3, a // 3 // 2) for a, _ in chunks}) == 12  # every (copy, chunk) once


def test_sequence_length_defaults_to_a_divisor_of_both_and_is_checked():
    assert PPOConfig.from_dict({"policy": "lstm"}).sequence_length == 32  # n_steps 256, minibatch_size 64: the defaults work
    assert PPOConfig.from_dict({"policy": "lstm", "n_steps": 32, "minibatch_size": 256}).sequence_length == 32
    assert PPOConfig.from_dict({"policy": "lstm", "n_steps": 24, "minibatch_size": 40, "n_envs": 5}).sequence_length == 8
    with pytest.raises(ConfigError, match=r"chunks of lstm_sequence_length=16 steps: minibatch_size \(40\) must be a multiple of it"):
        PPOConfig.from_dict({"policy": "lstm", "n_steps": 16, "minibatch_size": 40, "n_envs": 4, "lstm_sequence_length": 16})


def test_rollout_stores_states_and_episode_starts_and_the_first_ratio_is_exact():
    agent = _agent()
    rows = []
    agent.learn(callback=rows.append)
    collector = agent.collector
    assert collector.episode_starts[0].shape == (4,)
    # CueRecall's episodes last 6 steps: every copy starts one at steps 0, 6 and 12 of its first rollout... (up to the carried phase)
    starts = collector.episode_starts
    for env in range(4):
        begun = np.flatnonzero(starts[:, env])
        assert np.all(np.diff(begun) == 6)
        assert np.all(collector.states[begun, env] == 0.0)  # memory empty where an episode starts
    assert np.any(collector.states != 0.0)
    assert all(row["debug/first_ratio_deviation"] == 0.0 for row in rows)


def _value_after(agent, steps: int) -> float:
    obs = np.zeros((1, 1), np.float32)
    state = agent.policy.initial_state(1)
    for _ in range(steps):
        _, state = agent.policy.act(obs, np.random.default_rng(0), deterministic=True, state=state)
    return float(agent.policy.value(obs, state)[0])


@pytest.mark.parametrize("bootstrap", [True, False])
def test_truncation_bootstrapping_is_kept(bootstrap):
    """Under a 20-step TimeLimit the LSTM can count steps: only bootstrapping keeps V = 1 / (1 - gamma) late in an episode."""
    agent = PPO(lambda: gym.wrappers.TimeLimit(ConstantRewardEnv(), max_episode_steps=20),
                {"policy": "lstm", "lstm_hidden_size": 16, "n_envs": 4, "n_steps": 64, "minibatch_size": 64, "total_steps": 24_576,
                 "gamma": 0.9, "n_epochs": 10, "learning_rate": 3e-3, "bootstrap_truncated": bootstrap, "tensorboard": False},
                verbose=False, progress_bar=False, preset=None).learn()
    late = _value_after(agent, 19)
    if bootstrap:
        assert late == pytest.approx(10.0, rel=0.15)
    else:
        assert late < 5.0  # the time-limited value of the last step is 1


def test_predict_takes_and_returns_the_state():
    agent = _agent()
    obs = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    actions, state = agent.predict(obs)
    assert actions.shape == (2,) and state.shape == (2, agent.policy.state_size) and np.any(state != 0)
    _, single_state = agent.predict(obs[0], state=state[0])
    assert single_state.shape == (agent.policy.state_size,)
    # episode_start forgets the memory: the same as starting from None
    _, fresh = agent.predict(obs, deterministic=True)
    _, restarted = agent.predict(obs, state=state, episode_start=[True, True], deterministic=True)
    np.testing.assert_array_equal(fresh, restarted)
    with pytest.raises(InputError, match=rf"state has 3 values per copy; this policy's memory has {agent.policy.state_size} "):
        agent.predict(obs, state=np.zeros((2, 3)))


def test_recurrent_model_saves_loads_and_resumes_exactly(tmp_path):
    full = _agent(total_steps=64 * 4, checkpoint_interval=2)
    full.run_dir = tmp_path / "full"
    full.learn()
    full.save(tmp_path / "model")
    loaded = PPO.load(tmp_path / "model")
    assert loaded.policy.recurrent and loaded.policy_kind == "lstm"
    obs = np.random.default_rng(0).uniform(0, 1, (5, 3)).astype(np.float32)
    a, s = full.predict(obs, deterministic=True)
    b, t = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(s, t)
    # an LSTM over DictWalkEnv (a Dict with a mask; episodes end with each rollout) resumed from its checkpoint ends bitwise equal
    walk = {"total_steps": 64 * 4, "checkpoint_interval": 2}
    full = PPO(DictWalkEnv, SMALL | walk, run_dir=tmp_path / "walk", verbose=False, progress_bar=False, preset=None).learn()
    resumed = PPO.load(tmp_path / "walk" / "checkpoints" / "update_000000002", env=DictWalkEnv, run_dir=tmp_path / "resumed",
                       verbose=False, progress_bar=False).learn()
    assert resumed.num_updates == 4 and resumed.policy.recurrent
    for name, array in full.policy.state_dict().items():
        np.testing.assert_array_equal(resumed.policy.state_dict()[name], array, err_msg=name)


def _recall(agent, cue: int, delay: int = 4) -> int:
    """Show the cue, then blanks, then the query; the policy's answer."""
    state = None
    for t in range(delay + 2):
        obs = np.zeros(3, np.float32)
        if t == 0:
            obs[cue] = 1.0
        obs[2] = float(t == delay + 1)
        action, state = agent.predict(obs, state=state, deterministic=True)
    return int(action)


@pytest.mark.learning
def test_lstm_solves_a_memory_task_an_mlp_cannot():
    config = load_preset("ppokit-CueRecall-v0")[1]
    lstm = PPO("ppokit/CueRecall-v0", config, verbose=False, progress_bar=False).learn()
    assert float(np.mean(evaluate_policy(lstm, episodes=40))) >= 0.9  # +1 right, -1 wrong
    assert [_recall(lstm, 0), _recall(lstm, 1)] == [0, 1]  # predict carries the memory
    mlp = PPO("ppokit/CueRecall-v0", config | {"policy": "mlp"}, verbose=False, progress_bar=False).learn()
    assert float(np.mean(evaluate_policy(mlp, episodes=40, deterministic=False))) <= 0.5


@pytest.mark.learning
def test_dict_image_mask_and_lstm_train_together():
    """CueRecall with dict_obs: the cue is in an image key, a Discrete clock and a noise vector beside it, and the env's mask."""
    agent = PPO("ppokit/CueRecall-v0", load_preset("ppokit-CueRecall-v0-dict")[1], verbose=False, progress_bar=False).learn()
    assert agent.policy_kind == "lstm" and agent.collector.mask_reader.source == "obs"
    assert float(np.mean(evaluate_policy(agent, episodes=40))) >= 0.9
