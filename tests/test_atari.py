"""The Atari wrapper chain on real ALE games: shapes, dtypes, lives, clipped rewards and the real score of whole games."""

import numpy as np
import pytest

pytest.importorskip("ale_py")

from ppokit import PPO  # noqa: E402
from ppokit.errors import EnvError  # noqa: E402
from ppokit.gym.envs.make import make_env  # noqa: E402
from ppokit.gym.evaluate import evaluate_policy  # noqa: E402


def _play_one_game(env_id, seed=0):
    """Random actions until the game (not a life) is over: (frames seen, rewards, life ends, game info)."""
    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames, rewards, life_ends = [obs], [], 0
    while True:
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        frames.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            life_ends += 1
            if "game_score" in info:
                env.close()
                return frames, rewards, life_ends, info
            obs, _ = env.reset()
            frames.append(obs)


def test_breakout_frames_lives_and_game_score():
    frames, rewards, life_ends, info = _play_one_game("ALE/Breakout-v5")
    assert all(f.shape == (4, 84, 84) and f.dtype == np.uint8 for f in frames)
    assert life_ends == 5  # Breakout's five lives each end an episode for the learner
    assert set(rewards) <= {-1.0, 0.0, 1.0}
    assert info["game_score"] >= sum(rewards) and info["game_length"] >= len(rewards)


def test_game_score_is_the_unclipped_score():
    # Space Invaders pays 5 to 30 points an alien: the game score is far above the clipped sum
    _, rewards, _, info = _play_one_game("ALE/SpaceInvaders-v5")
    hits = sum(1 for r in rewards if r > 0)
    assert hits > 0 and info["game_score"] >= 5 * hits and info["game_score"] % 5 == 0


def test_stacked_frames_differ_as_the_game_moves():
    frames, *_ = _play_one_game("ALE/Breakout-v5")
    late = frames[50]
    assert not np.array_equal(late[0], late[3])  # four different frames, oldest first
    np.testing.assert_array_equal(frames[51][:3], late[1:])  # the stack shifts by one each step


def test_base_frame_skip_is_refused():
    with pytest.raises(EnvError, match="frameskip=1"):
        make_env("ALE/Breakout-v5", {"frameskip": 4})


def test_ppo_on_atari_logs_whole_games_and_evaluates_whole_games():
    config = {"n_envs": 2, "n_steps": 256, "minibatch_size": 128, "n_epochs": 1, "total_steps": 1024, "tensorboard": False}
    agent = PPO("ALE/Breakout-v5", config, verbose=False, progress_bar=False)
    assert agent.preset_name == "ALE-Breakout-v5" and agent.policy_kind == "cnn"
    assert agent.config.clip_range == 0.1 and agent.config.ent_coef == 0.01  # the Atari preset's values, under the config's
    lengths = []
    agent.learn(callback=lambda m: lengths.append(m["charts/episodic_length"]) if "charts/episodic_length" in m else None)
    games = agent.recent_returns
    assert 1 <= len(games) <= 12  # ~170 steps a game at random: whole games, not lives (5 a game)
    assert all(score >= 0 and float(score).is_integer() for score in games)
    # a game of Breakout is 5 lives of at least ~20 agent steps each; one life at random lasts ~35
    assert lengths and min(lengths) >= 100, lengths
    calls = []
    predict = agent.predict
    agent.predict = lambda *args, **kwargs: (calls.append(1), predict(*args, **kwargs))[1]
    scores = evaluate_policy(agent, episodes=2, deterministic=False)
    assert len(scores) == 2 and all(s >= 0 for s in scores)
    assert len(calls) >= 100  # the evaluation ran until the games were over, not until a life was lost


def test_any_ale_id_gets_the_atari_preset():
    agent = PPO("ALE/Pong-v5", {"n_envs": 2, "n_steps": 128, "minibatch_size": 128, "total_steps": 256}, verbose=False, progress_bar=False)
    assert agent.preset_name == "Atari" and agent.config.n_epochs == 4 and agent.config.lr_schedule == "linear"


def test_ale_ids_are_known_without_importing_ale_py_first():
    import subprocess
    import sys

    code = "from ppokit.gym.envs.make import check_env_id; check_env_id('ALE/Pong-v5'); print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
