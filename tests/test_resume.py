"""Checkpoints and resume: a run stopped by a signal continues exactly where its checkpoint stopped."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from envs import FixedLengthWalkEnv

from ppokit import PPO
from ppokit.checkpoint import list_checkpoints, load_checkpoint

SMALL = {"n_envs": 2, "n_steps": 16, "minibatch_size": 16, "n_epochs": 2, "lr_schedule": "linear", "clip_schedule": "linear",
         "normalize_obs": True, "normalize_reward": True, "tensorboard": False}


def _walk():
    return FixedLengthWalkEnv(length=16)


def test_checkpoint_restores_everything_exactly(tmp_path):
    agent = PPO(_walk, SMALL | {"total_steps": 32 * 6, "checkpoint_interval": 4}, run_dir=tmp_path, verbose=False, progress_bar=False)
    agent.learn()
    arrays, meta, path = load_checkpoint(list_checkpoints(tmp_path)[0])
    assert path.name == "update_000000004" and meta["num_updates"] == 4 and meta["global_step"] == 4 * 32

    resumed = PPO.load(path, env=_walk, verbose=False, progress_bar=False)
    for name, array in resumed.policy.state_dict().items():
        np.testing.assert_array_equal(array, arrays["model/" + name], err_msg=name)
    assert float(resumed.policy.obs_normalizer.stats.count) > 100  # normalizer statistics came back
    for name, array in resumed.engine.state_dict().items():
        np.testing.assert_array_equal(array, arrays["engine/" + name], err_msg=name)
    assert resumed.engine.optimizer.steps == 4 * 2 * 2  # updates x epochs x minibatches
    assert (resumed.num_updates, resumed.global_step) == (4, 128)
    assert resumed.plan == {"start_update": 0, "updates": 6}
    assert resumed.rng.bit_generator.state == meta["rng"]["actions"]
    # the learning rate continues on the linear schedule: update 5 of 6
    rows = []
    resumed.learn(callback=lambda m: rows.append(m["charts/learning_rate"]))
    assert rows == pytest.approx([3e-4 * (1 - 4 / 6), 3e-4 * (1 - 5 / 6)])
    assert resumed.num_updates == 6


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_resumed_run_ends_with_bitwise_identical_parameters(tmp_path, engine):
    config = SMALL | {"total_steps": 32 * 6, "checkpoint_interval": 3, "engine": engine}
    full = PPO(_walk, config, run_dir=tmp_path / "full", verbose=False, progress_bar=False)
    full.learn()
    middle = tmp_path / "full" / "checkpoints" / "update_000000003"
    resumed = PPO.load(middle, env=_walk, run_dir=tmp_path / "resumed", verbose=False, progress_bar=False)
    resumed.learn()
    assert resumed.num_updates == full.num_updates == 6
    np.testing.assert_array_equal(resumed.policy.params.flat, full.policy.params.flat)
    for name, array in full.policy.state_dict().items():
        np.testing.assert_array_equal(resumed.policy.state_dict()[name], array, err_msg=name)


def test_keeps_only_the_newest_checkpoints(tmp_path):
    PPO(_walk, SMALL | {"total_steps": 32 * 7, "checkpoint_interval": 1, "keep_checkpoints": 2}, run_dir=tmp_path, verbose=False, progress_bar=False).learn()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["update_000000006", "update_000000007"]
    assert not list((tmp_path / "checkpoints").glob(".writing-*"))  # no staging folder left behind


def test_callback_returning_false_stops_with_a_checkpoint(tmp_path):
    class StopAtThree:
        def on_update(self, metrics):
            return metrics["update"] < 3

    agent = PPO(_walk, SMALL | {"total_steps": 32 * 10, "checkpoint_interval": 0}, run_dir=tmp_path, verbose=False, progress_bar=False)
    agent.learn(callback=StopAtThree())
    assert agent.num_updates == 3
    assert [p.name for p in list_checkpoints(tmp_path)] == ["update_000000003"]


def test_best_model_is_saved_by_the_evaluation_callback(tmp_path, monkeypatch):
    """Evaluations scoring 1, 3, 2: the best model holds the weights of the second evaluation, not of the last one."""
    import ppokit.gym.evaluate as evaluation

    scores = iter([1.0, 3.0, 2.0])
    monkeypatch.setattr(evaluation, "evaluate_policy", lambda agent, **kwargs: [next(scores)])
    agent = PPO(_walk, SMALL | {"total_steps": 32 * 6, "eval_interval": 2, "eval_episodes": 2}, run_dir=tmp_path, verbose=False, progress_bar=False)
    seen, weights = [], []
    agent.learn(callback=lambda m: (seen.append(m.get("eval/mean_return")), weights.append(agent.policy.params.flat.copy())))
    assert seen == [None, 1.0, None, 3.0, None, 2.0] and agent.best_eval_return == 3.0
    best = PPO.load(tmp_path / "best_model", env=_walk)
    np.testing.assert_array_equal(best.policy.params.flat, weights[3])  # saved at update 4, the best evaluation
    assert not np.array_equal(best.policy.params.flat, weights[5])  # and not overwritten by the later, worse one


def _rows(run_dir):
    with open(run_dir / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_sigint_leaves_a_checkpoint_and_resume_finishes_the_run(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "ppokit.cli", "train", "CartPole-v1", "--run-dir", str(run), "--no-progress", "--quiet", "checkpoint_interval=10"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until it is well into training
        if (run / "progress.csv").exists() and len(_rows(run)) >= 60:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr
    arrays, meta, path = load_checkpoint(run)
    stopped_at = meta["num_updates"]
    assert 60 <= stopped_at < 390  # stopped in the middle (390 updates in the preset)
    assert [int(r["update"]) for r in _rows(run)] == list(range(1, stopped_at + 1))

    # a row logged after the checkpoint (as if the process had died later) must not be duplicated
    with open(run / "progress.csv", "a") as f:
        f.write(f"{meta['global_step'] + 250},{stopped_at + 1}\n")
    from ppokit.run_logging import ScalarWriter

    orphan = ScalarWriter(run)
    orphan.add_scalar("losses/policy_loss", 0.0, meta["global_step"] + 250)
    orphan.close()
    result = subprocess.run([sys.executable, "-m", "ppokit.cli", "train", "--resume", str(run), "--no-progress", "--quiet"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = _rows(run)
    assert [int(r["update"]) for r in rows] == list(range(1, 391))  # one row per update, no gap, no duplicate
    steps = [int(r["global_step"]) for r in rows]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    learning_rates = [float(r["charts/learning_rate"]) for r in rows]
    assert learning_rates == pytest.approx([1e-3 * (1 - u / 390) for u in range(390)])  # schedule carried on
    assert json.loads((run / "eval.json").read_text())["mean_return"] >= 475

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()  # applies the purge marker the resumed run wrote
    tb_steps = [e.step for e in events.Scalars("losses/policy_loss")]
    assert tb_steps == steps  # TensorBoard continued too: one point per update, none twice
