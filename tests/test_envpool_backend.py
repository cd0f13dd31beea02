"""The envpool backend: adapter semantics against a stand-in envpool module, and real envpool where installed.

The stand-in has envpool's interface (make(id, env_type, num_envs, seed), reset(), step(), list_all_envs())
over gymnasium's own vector envs in NEXT_STEP autoreset mode, which is how envpool resets a finished copy.
The real package is only tested where it is installed with a numpy it works with (numpy<2 for 0.8.4).
"""

import sys
import types

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from ppokit import PPO
from ppokit.errors import EnvError
from ppokit.gym.envs.envpool_backend import EnvpoolVectorEnv
from ppokit.gym.envs.make import make_vector_env


class _StandInPool:
    def __init__(self, task_id, env_type, num_envs, seed, **kwargs):
        assert env_type == "gymnasium"
        mode = "vector_entry_point" if task_id == "CartPole-v1" else "sync"
        extra = {} if mode == "vector_entry_point" else {"vector_kwargs": {"autoreset_mode": AutoresetMode.NEXT_STEP}}
        self.envs = gym.make_vec(task_id, num_envs=num_envs, vectorization_mode=mode, **extra, **kwargs)
        self.seed, self.resets = seed, 0
        self.observation_space, self.action_space = self.envs.single_observation_space, self.envs.single_action_space

    def reset(self):
        self.resets += 1
        return self.envs.reset(seed=self.seed if self.resets == 1 else None)

    def step(self, actions):
        return self.envs.step(actions)

    def close(self):
        self.envs.close()


@pytest.fixture
def stand_in_envpool(monkeypatch):
    module = types.SimpleNamespace(__version__="0.9.0", make=_StandInPool, list_all_envs=lambda: ["CartPole-v1", "Pendulum-v1"])
    monkeypatch.setitem(sys.modules, "envpool", module)
    return module


def test_envpool_backend_matches_gymnasium_vector_env_update_for_update(stand_in_envpool):
    """Same seed, same NEXT_STEP env underneath: the adapter must give the very same training run."""
    config = {"n_envs": 4, "n_steps": 64, "total_steps": 4 * 64 * 3, "n_epochs": 2, "minibatch_size": 64, "tensorboard": False, "seed": 3}
    agents, metrics = {}, {}
    for backend, vec_env in (("envpool", "auto"), ("gymnasium", "vector")):
        agents[backend] = PPO("CartPole-v1", {**config, "env_backend": backend, "vec_env": vec_env}, verbose=False, progress_bar=False)
        metrics[backend] = []
        agents[backend].learn(callback=lambda m, rows=metrics[backend]: rows.append(dict(m)) and None)
    assert isinstance(agents["envpool"].envs, EnvpoolVectorEnv) and not isinstance(agents["gymnasium"].envs, EnvpoolVectorEnv)
    assert len(metrics["envpool"]) == 3
    for name in ("global_step", "losses/policy_loss", "losses/value_loss", "losses/approx_kl"):
        assert [m[name] for m in metrics["envpool"]] == [m[name] for m in metrics["gymnasium"]], name
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    np.testing.assert_array_equal(agents["envpool"].predict(obs, deterministic=True), agents["gymnasium"].predict(obs, deterministic=True))


def test_envpool_backend_only_when_asked_for(stand_in_envpool):
    assert not isinstance(make_vector_env("Pendulum-v1", 2, "auto"), EnvpoolVectorEnv)  # default: gymnasium
    pendulum = make_vector_env("Pendulum-v1", 2, "auto", backend="envpool", seed=5)
    assert isinstance(pendulum, EnvpoolVectorEnv)
    assert pendulum.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, _ = pendulum.reset(seed=5)
    assert obs.shape == (2, 3) and pendulum.action_space.shape == (2, 1)
    assert pendulum.single_observation_space == gym.make("Pendulum-v1").observation_space  # gymnasium's spaces


def _real_envpool():
    """envpool where it is installed with a numpy it works with: `make test-envpool` runs these in a venv of its own (numpy<2)."""
    envpool = pytest.importorskip("envpool")
    from ppokit.gym.envs.envpool_backend import numpy_too_new_for

    if numpy_too_new_for(envpool):
        pytest.skip(f"envpool {envpool.__version__} needs numpy<2 (numpy {np.__version__} here): make test-envpool runs it")
    return envpool


def _pendulum_step(obs: np.ndarray) -> np.ndarray:
    """Pendulum-v1's dynamics with no torque (g 10, m 1, l 1, dt 0.05): the next observation from this one."""
    cos, sin, speed = obs
    speed = np.clip(speed + 3 * 10.0 / 2 * sin * 0.05, -8, 8)
    angle = np.arctan2(sin, cos) + speed * 0.05
    return np.array([np.cos(angle), np.sin(angle), speed])


def test_truncated_episode_keeps_its_final_observation_for_bootstrapping():
    _real_envpool()
    envs = EnvpoolVectorEnv("Pendulum-v1", 1, seed=0)  # Pendulum only ends by its 200-step time limit
    obs, _ = envs.reset(seed=0)
    for _ in range(200):
        previous = obs[0].astype(np.float64)
        obs, reward, terminated, truncated, _ = envs.step(np.zeros((1, 1), dtype=np.float32))
    assert truncated.tolist() == [True] and terminated.tolist() == [False]
    # the observation of the truncating step is the episode's own last state (what GAE bootstraps from), not a reset one
    np.testing.assert_allclose(obs[0], _pendulum_step(previous), atol=1e-4)
    obs, reward, terminated, truncated, _ = envs.step(np.zeros((1, 1), dtype=np.float32))  # envpool's reset step
    assert not truncated.any() and reward.tolist() == [0.0] and abs(obs[0, 2]) <= 1.0  # a fresh start: speed in [-1, 1]
    assert not np.allclose(obs[0], _pendulum_step(_pendulum_step(previous)), atol=1e-3)


def test_envpool_errors_name_the_problem(stand_in_envpool, monkeypatch):
    with pytest.raises(EnvError, match="envpool has no env 'Acrobot-v1'"):
        EnvpoolVectorEnv("Acrobot-v1", 2)
    with pytest.raises(EnvError, match="needs an env id"):
        make_vector_env(lambda: gym.make("CartPole-v1"), 2, backend="envpool")
    with pytest.raises(EnvError, match="unknown env_backend 'pool'"):
        make_vector_env("CartPole-v1", 2, backend="pool")
    stand_in_envpool.__version__ = "0.8.4"
    monkeypatch.setattr(np, "__version__", "2.4.6")
    with pytest.raises(EnvError, match="numpy<2"):
        EnvpoolVectorEnv("CartPole-v1", 2)
    monkeypatch.setitem(sys.modules, "envpool", None)  # not installed
    with pytest.raises(EnvError, match=r"pip install 'ppokit\[envpool\]'"):
        EnvpoolVectorEnv("CartPole-v1", 2)


def test_real_envpool_cartpole_copies_get_their_own_seeds():
    _real_envpool()
    envs = EnvpoolVectorEnv("CartPole-v1", 4, seed=0)
    obs, _ = envs.reset(seed=0)
    assert len({tuple(row) for row in obs.round(6)}) == 4  # each copy its own seed
    assert len(set(obs[0].round(6))) == 4


class _ScriptedAtariPool:
    """envpool's Atari interface with scripted steps: a life lost every 3 steps, the game over after 2 lives,
    a raw reward of 4 (clipped to 1) on every game step. After each done, envpool's reset step (reward 0)."""

    observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def __init__(self, task_id, env_type, num_envs, seed, **kwargs):
        assert task_id == "Breakout-v5" and kwargs["episodic_life"] and kwargs["reward_clip"] and kwargs["stack_num"] == 4
        self.num_envs, self.t = num_envs, 0

    def reset(self):
        return np.zeros((self.num_envs, 4, 84, 84), np.uint8), {}

    def step(self, actions):
        # steps 1-3: a life (done at 3); 4: reset step; 5-7: the last life (game over at 7); 8: reset step
        self.t = self.t % 8 + 1
        resetting = self.t in (4, 8)
        done = self.t in (3, 7)
        n = self.num_envs
        info = {"reward": np.full(n, 0.0 if resetting else 4.0), "terminated": np.full(n, int(self.t == 7)), "lives": np.full(n, 0 if self.t == 7 else 1)}
        return (np.zeros((n, 4, 84, 84), np.uint8), np.full(n, 0.0 if resetting else 1.0), np.full(n, done), np.zeros(n, bool), info)

    def close(self):
        pass


def test_envpool_atari_reports_whole_games_at_their_real_score(monkeypatch):
    module = types.SimpleNamespace(__version__="0.9.0", make=_ScriptedAtariPool, list_all_envs=lambda: ["Breakout-v5"])
    monkeypatch.setitem(sys.modules, "envpool", module)
    envs = EnvpoolVectorEnv("ALE/Breakout-v5", 2, seed=0)
    assert envs.single_observation_space.shape == (4, 84, 84)
    envs.reset(seed=0)
    games = []
    for _ in range(16):
        _, rewards, terminated, _, infos = envs.step(np.zeros(2, np.int64))
        assert set(rewards) <= {0.0, 1.0}  # the learner sees clipped rewards
        final = infos.get("final_info")
        if final:
            games += [(final["game_score"][i], final["game_length"][i]) for i in np.flatnonzero(final["_game_score"])]
    # two games per copy in 16 steps: 6 game steps of raw reward 4 each, the reset between lives not counted
    assert games == [(24.0, 6)] * 4


def test_real_envpool_breakout_trains_and_logs_whole_games():
    _real_envpool()
    pytest.importorskip("ale_py")
    config = {"env_backend": "envpool", "n_envs": 4, "n_steps": 128, "minibatch_size": 128, "n_epochs": 1, "total_steps": 2048, "tensorboard": False}
    agent = PPO("ALE/Breakout-v5", config, verbose=False, progress_bar=False).learn()
    assert isinstance(agent.envs, EnvpoolVectorEnv)
    assert 1 <= len(agent.recent_returns) <= 16 and all(score >= 0 for score in agent.recent_returns)
