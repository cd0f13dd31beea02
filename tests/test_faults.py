"""Non-finite losses are skipped, then stop the run; a crashing env names itself; checkpoints survive."""

import numpy as np
import pytest
from envs import CrashingEnv, FixedLengthWalkEnv

from ppokit import PPO
from ppokit.checkpoint import list_checkpoints, load_checkpoint
from ppokit.core.settings import UpdateSettings
from ppokit.errors import EnvError, NonFiniteError

SMALL = {"n_envs": 2, "n_steps": 16, "minibatch_size": 16, "n_epochs": 2, "tensorboard": False}


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_minibatch_with_non_finite_loss_is_skipped(engine):
    agent = PPO(lambda: FixedLengthWalkEnv(16), SMALL | {"total_steps": 32, "engine": engine}, verbose=False, progress_bar=False)
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (32, 1)).astype(np.float32)
    actions = rng.integers(0, 2, 32)
    logprobs, values = agent.engine.score(obs, actions)
    advantages = rng.normal(size=32).astype(np.float32)
    advantages[20] = np.nan  # poisons the second minibatch of each epoch
    samples = {"obs": obs, "actions": actions, "logprobs": logprobs, "values": values, "advantages": advantages, "returns": values + 1}
    before = agent.policy.params.flat.copy()
    order = np.arange(32)
    stats = agent.engine.update(samples, UpdateSettings(n_epochs=2, minibatch_size=16, clip_range=0.2, normalize_advantage=False), lambda epoch: order)
    assert stats["skipped_steps"] == 2 and stats["num_minibatches"] == 2
    assert stats["trailing_skipped_steps"] == 1
    assert np.isfinite(agent.policy.params.flat).all()
    assert not np.array_equal(before, agent.policy.params.flat)  # the finite minibatches were applied


def test_run_stops_after_too_many_non_finite_steps_and_keeps_its_checkpoint(tmp_path):
    agent = PPO(lambda: FixedLengthWalkEnv(16), SMALL | {"total_steps": 32 * 10, "checkpoint_interval": 2, "max_nonfinite_steps": 6},
                run_dir=tmp_path, verbose=False, progress_bar=False)

    def poison(metrics):
        if metrics["update"] == 5:
            agent.policy.params.flat[:] = np.nan  # from here on every loss is NaN

    with pytest.raises(NonFiniteError, match=r"8 gradient steps in a row.*max_nonfinite_steps=6.*stopped at update 7.*last checkpoint: .*update_000000004"):
        agent.learn(callback=poison)
    arrays, meta, _ = load_checkpoint(tmp_path)
    assert meta["num_updates"] == 4  # the poisoned weights were never checkpointed (update 6 skipped it)
    assert all(np.isfinite(a).all() for name, a in arrays.items() if a.dtype.kind == "f")
    assert (tmp_path / "progress.csv").read_text().count("\n") == 1 + 6  # header + updates 1..6 were logged


def test_crashing_env_names_itself_and_the_run_keeps_its_checkpoint(tmp_path):
    def crashing():
        return CrashingEnv(crash_at=150)

    agent = PPO(crashing, SMALL | {"total_steps": 32 * 20, "checkpoint_interval": 2}, run_dir=tmp_path, verbose=False, progress_bar=False)
    with pytest.raises(EnvError, match=r"'crashing' raised RuntimeError in step\(\) at global step \d+: simulator lost contact"):
        agent.learn()
    checkpoints = list_checkpoints(tmp_path)
    assert checkpoints and load_checkpoint(tmp_path)[1]["num_updates"] == 8
    assert (tmp_path / "progress.csv").is_file()
