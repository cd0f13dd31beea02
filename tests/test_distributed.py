"""Data parallel on torch.distributed (gloo, 2 processes on this machine): the update equals the
single-process update, runs train, checkpoint and resume, and a failing rank stops every rank."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from distributed_worker import UPDATE_CASES, one_update

from ppokit.checkpoint import list_checkpoints, load_checkpoint
from ppokit.errors import CheckpointError

WORKER = Path(__file__).parent / "distributed_worker.py"
WALK = {"n_envs": 4, "n_steps": 16, "minibatch_size": 32, "n_epochs": 2, "normalize_obs": True, "normalize_reward": True, "tensorboard": False,
        "total_steps": 64 * 6, "checkpoint_interval": 3, "eval_interval": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args, nproc: int = 2, nnodes: int = 1, node_rank: int = 0, port: int | None = None, extra_env: dict | None = None, wait: bool = True,
           timeout: float = 240):
    """torchrun on this machine: ``args`` after the launcher's own flags."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--nnodes={nnodes}", f"--node_rank={node_rank}",
               "--master_addr=127.0.0.1", f"--master_port={port or free_port()}", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1", **(extra_env or {}))
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def ranks_weights(out: Path, size: int = 2) -> list[np.ndarray]:
    return [np.load(out / f"weights-rank{rank}.npy") for rank in range(size)]


@pytest.mark.parametrize("case", list(UPDATE_CASES))
def test_two_ranks_with_half_the_batch_each_make_the_single_process_update(tmp_path, case):
    """MLP on both engines; with action masks and weighted samples; an LSTM over whole env sequences."""
    result = launch(WORKER, case, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rank0, rank1 = ranks_weights(tmp_path)
    np.testing.assert_array_equal(rank0, rank1)  # the ranks hold the same weights, bit for bit
    single = one_update(case, split_over=2)  # this process: a world of one, on the whole batch
    assert np.abs(rank0 - single).max() < 1e-6
    assert np.abs(single - _untrained_weights(case)).max() > 1e-3  # the update moved the weights: the comparison says something


def _untrained_weights(case: str) -> np.ndarray:
    return one_update(case, split_over=2, update=False)


@pytest.mark.parametrize("env, policy", [("walk", {}), ("dict-walk", {"policy": "lstm", "lstm_hidden_size": 16})], ids=["mlp", "dict-mask-lstm"])
def test_two_process_run_checkpoints_and_resumes_exactly(tmp_path, env, policy):
    """The MLP on a Box walk; an LSTM over a Dict observation with an action mask (whole sequences per rank)."""
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    result = launch(WORKER, "train", full, json.dumps({"env": env, "config": WALK | policy, "run_dir": str(full)}))
    assert result.returncode == 0, result.stdout + result.stderr
    rank0, rank1 = ranks_weights(full)
    np.testing.assert_array_equal(rank0, rank1)
    counters = json.loads((full / "counters-rank0.json").read_text())
    assert counters == {"global_step": 64 * 6, "num_updates": 6, "world_size": 2}  # global steps: both ranks' envs
    _, meta, _ = load_checkpoint(list_checkpoints(full)[0])
    assert meta["num_updates"] == 3 and meta["world_size"] == 2 and len(meta["ranks"]) == 2
    assert meta["ranks"][0]["rng"]["actions"] != meta["ranks"][1]["rng"]["actions"]  # each rank's own stream
    assert not (full / "checkpoints" / "update_000000003" / "rank1").exists()

    middle = full / "checkpoints" / "update_000000003"
    result = launch(WORKER, "train", resumed, json.dumps({"env": env, "resume": str(middle), "run_dir": str(resumed)}))
    assert result.returncode == 0, result.stdout + result.stderr
    np.testing.assert_array_equal(ranks_weights(resumed)[0], rank0)  # the resumed run ends where the uninterrupted one did

    one = subprocess.run([sys.executable, str(WORKER), "train", tmp_path / "one", json.dumps({"env": env, "resume": str(middle)})],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), timeout=120)
    assert one.returncode != 0
    assert "written by a run of 2 process(es)" in one.stderr and "not 1" in one.stderr


def test_two_nodes_on_one_machine_train_and_agree(tmp_path):
    port = free_port()
    spec = json.dumps({"env": "walk", "config": WALK | {"total_steps": 64 * 3}})
    nodes = [launch(WORKER, "train", tmp_path, spec, nproc=1, nnodes=2, node_rank=rank, port=port, wait=False) for rank in (0, 1)]
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    rank0, rank1 = ranks_weights(tmp_path)
    np.testing.assert_array_equal(rank0, rank1)
    assert json.loads((tmp_path / "counters-rank1.json").read_text())["global_step"] == 64 * 3


def test_a_rank_that_raises_stops_every_rank_with_its_name_and_cause(tmp_path):
    config = {"n_envs": 2, "n_steps": 16, "minibatch_size": 16, "total_steps": 32 * 100, "tensorboard": False, "eval_interval": 0}
    started = time.monotonic()
    result = launch(WORKER, "train", tmp_path, json.dumps({"env": "crash", "config": config, "run_dir": str(tmp_path / "run")}), timeout=120)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert elapsed < 90, f"took {elapsed:.0f} s"
    # rank 0 learns from the failure record which rank failed and why
    assert "rank 0: a collective failed (rank 1 raised EnvError" in output, output[-3000:]
    assert "simulator lost contact" in output


def test_a_rank_that_hangs_is_timed_out(tmp_path):
    config = {"n_envs": 2, "n_steps": 16, "minibatch_size": 16, "total_steps": 32 * 4, "tensorboard": False, "eval_interval": 0}
    started = time.monotonic()
    result = launch(WORKER, "train", tmp_path, json.dumps({"env": "walk", "config": config, "hang_rank": 1}), extra_env={"PPOKIT_DIST_TIMEOUT": "5"},
                    timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert elapsed < 90, f"took {elapsed:.0f} s"
    assert "rank 0: a collective failed" in result.stdout + result.stderr


def test_sigint_to_the_launcher_leaves_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    launcher = launch("-m", "ppokit", "train", "CartPole-v1", "--run-dir", run, "--no-progress", "--quiet", "checkpoint_interval=1000", wait=False)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "progress.csv").exists() and len((run / "progress.csv").read_text().splitlines()) > 20):
        time.sleep(0.1)
    launcher.send_signal(signal.SIGINT)
    output, _ = launcher.communicate(timeout=90)
    assert launcher.returncode != 0
    _, meta, path = load_checkpoint(run)
    assert meta["world_size"] == 2 and 20 <= meta["num_updates"] < 390, output[-2000:]
    assert "--resume" in output

    # a 2-process run loads in one process for inference: evaluation, predict (only continuing it needs 2 processes)
    from ppokit.gym.agent import PPO

    evaluation = subprocess.run([sys.executable, "-m", "ppokit", "eval", str(run), "--episodes", "2", "--deterministic"], capture_output=True,
                                text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), timeout=120)
    assert evaluation.returncode == 0, evaluation.stderr
    assert "mean return" in evaluation.stdout and (run / f"eval-2-deterministic-seed{10_000}.json").is_file()
    agent = PPO.load(run, verbose=False)
    assert agent.predict(np.zeros(4, dtype=np.float32), deterministic=True) in (0, 1)
    with pytest.raises(CheckpointError, match=r"written by a run of 2 process\(es\); resume it with the same number .* not 1"):
        agent.learn()


@pytest.mark.learning
def test_two_process_cartpole_solves(tmp_path):
    run = tmp_path / "run"
    result = launch("-m", "ppokit", "train", "CartPole-v1", "--run-dir", run, "--no-progress", "--quiet", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["mean_return"] >= 475
    assert not list(run.glob("*rank1*"))


class _RecordingWorld:
    """A world of two seen from one rank: ``sum`` adds the other rank's share, given up front (or records this one's)."""

    distributed, size = True, 2

    def __init__(self, peer=None):
        self.peer, self.sent = peer, None

    def sum(self, array):
        self.sent = np.array(array, copy=True)
        return array + self.peer if self.peer is not None else array


def test_normalizer_statistics_merged_over_ranks_equal_one_process_seeing_every_batch():
    from ppokit.core.running_stats import RunningMeanStd, merge_over_ranks

    rng = np.random.default_rng(0)
    seen_before = rng.normal(2.0, 3.0, size=(50, 3))
    batches = {rank: [rng.normal(rank, 1.0 + rank, size=(8, 3)) for _ in range(4)] for rank in (0, 1)}
    ranks = {rank: RunningMeanStd.fresh((3,)) for rank in (0, 1)}
    single = RunningMeanStd.fresh((3,))
    for stats in (*ranks.values(), single):
        stats.update(seen_before)
    before = {name: np.array(value, copy=True) for name, value in ranks[0].state_dict().items()}
    for rank, stats in ranks.items():
        for batch in batches[rank]:
            stats.update(batch)
    for batch in batches[0] + batches[1]:
        single.update(batch)

    recorder = _RecordingWorld()
    merge_over_ranks(ranks[1], {k: v.copy() for k, v in before.items()}, recorder)  # rank 1's share, as it would send it
    merge_over_ranks(ranks[0], before, _RecordingWorld(peer=recorder.sent))
    np.testing.assert_allclose(ranks[0].mean, single.mean, rtol=1e-12)
    np.testing.assert_allclose(ranks[0].var, single.var, rtol=1e-10)
    assert float(ranks[0].count) == pytest.approx(float(single.count))


def test_n_envs_or_minibatch_that_does_not_split_over_the_processes_is_a_clear_error():
    from ppokit.distributed import World
    from ppokit.errors import ConfigError
    from ppokit.gym.config import PPOConfig
    from ppokit.gym.data_parallel import check_divisible_by_world

    check_divisible_by_world(PPOConfig.from_dict({"n_envs": 8, "minibatch_size": 256}), World(size=2, rank=1))
    with pytest.raises(ConfigError, match=r"n_envs=6 does not split evenly over 4 processes.*multiple of 4"):
        check_divisible_by_world(PPOConfig.from_dict({"n_envs": 6, "minibatch_size": 64}), World(size=4))
    with pytest.raises(ConfigError, match=r"minibatch_size=30 does not split evenly over 4 processes"):
        check_divisible_by_world(PPOConfig.from_dict({"n_envs": 8, "minibatch_size": 30, "n_steps": 15}), World(size=4))


def test_a_world_of_one_exchanges_nothing():
    from ppokit.distributed import World

    world = World()
    assert not world.distributed and world.is_main
    assert world.gather_json({"a": 1}) == [{"a": 1}] and world.broadcast_json(3) == 3
    np.testing.assert_array_equal(world.sum(np.arange(3.0)), np.arange(3.0))
    np.testing.assert_array_equal(world.gather_rows(np.ones((2, 2))), np.ones((2, 2)))
