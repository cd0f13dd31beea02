"""Data parallel `ppokit lm ppo|sft|rm` under torchrun (gloo, 2 processes on this machine): the update of
2 ranks x half the global batch equals the single-process update on the whole batch, checkpoints
hold every rank's random streams and resume exactly, and another world size is refused."""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ppokit.checkpoint import list_checkpoints, load_checkpoint
from ppokit.errors import CheckpointError, ConfigError
from ppokit.lm.config import LMPPOConfig, RewardModelConfig, SFTConfig
from ppokit.lm.data import write_jsonl
from ppokit.lm.ppo import LMPPOTrainer
from ppokit.lm.reward_model import RewardModelTrainer
from ppokit.lm.sft import SFTTrainer
from ppokit.lm.tasks import get_task

SORT = get_task("sort")
TOLERANCE = 1e-6
# The ranks add their gradients in another order than one process does: ~1e-9 apart where large terms cancel. Adam's
# first step moves a weight by lr * g / (|g| + eps), which turns that into up to lr / eps * 1e-9: the runs here use
# lr / eps = 10 (with AdamW's default eps 1e-8 and lr 1e-3 a few weights differ by 1e-4).


def torchrun(*args, nproc: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=nproc -m ppokit lm ARGS`` (--standalone: the launcher binds a free port itself)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "ppokit", "lm", *map(str, args),
               "--no-progress", "--quiet"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def as_arguments(values: dict) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def model_arrays(path: Path) -> dict[str, torch.Tensor]:
    """The trained parameters in a checkpoint folder or run dir (the newest checkpoint)."""
    arrays, _, _ = load_checkpoint(path, framework="pt")
    return {key: value for key, value in arrays.items() if key.startswith("model.")}


def max_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    assert first.keys() == second.keys()
    return max(float((first[key].double() - second[key].double()).abs().max()) for key in first)


def policy_difference(weights_file: Path, arrays: dict[str, torch.Tensor]) -> float:
    """Between a saved policy and the policy's parameters in a checkpoint."""
    saved = load_file(weights_file)
    return max(float((saved[key] - arrays[f"model.policy.{key}"]).abs().max()) for key in saved if f"model.policy.{key}" in arrays)


def checkpoint(run_dir: Path, step: int) -> Path:
    return next(path for path in list_checkpoints(run_dir) if path.name == f"update_{step:09d}")


def _prompts(n, seed=0):
    rng = random.Random(seed)
    return [SORT.sample_prompt(rng) for _ in range(n)]


# ---------------------------------------------------------------- PPO
@pytest.fixture(scope="module")
def ppo_setup(saved_model, tmp_path_factory):
    """The config (2 updates of one global minibatch each; top_k=1 makes the responses the same however the
    prompts are split over ranks) and the single-process run of it."""
    folder = tmp_path_factory.mktemp("ppo")
    prompts = write_jsonl(folder / "prompts.jsonl", ({"prompt": p} for p in _prompts(24)))
    values = {"policy": str(saved_model), "prompts": str(prompts), "reward_function": ["ppokit.lm.tasks:sort_gold_reward"], "batch_size": 8,
              "minibatch_size": 8, "grad_accum_steps": 2, "n_epochs": 2, "total_episodes": 16, "max_new_tokens": 7, "top_k": 1,
              "learning_rate": 1e-4, "checkpoint_interval": 1, "keep_checkpoints": 5, "tensorboard": False, "torch_threads": 1, "seed": 3}
    single = LMPPOTrainer(LMPPOConfig.from_dict(values), run_dir=folder / "single", progress=False, verbose=False)
    single.train()
    return values, folder / "single"


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_ppo_two_ranks_make_the_single_process_updates_and_resume_exactly(ppo_setup, saved_model, tmp_path, parallel):
    values, single = ppo_setup
    run = tmp_path / "run"
    torchrun("ppo", "--run-dir", run, *as_arguments(values | {"parallel": parallel}))
    # one update: 2 ranks x 4 prompts against 1 process x 8 (global score normalization, whitening, minibatch, gradient)
    after_one = model_arrays(checkpoint(run, 1))
    assert max_difference(after_one, model_arrays(checkpoint(single, 1))) < TOLERANCE
    assert policy_difference(saved_model / "model.safetensors", after_one) > 1e-5  # the update moved the weights
    assert max_difference(model_arrays(run), model_arrays(single)) < TOLERANCE  # and the second update too
    saved, expected = load_file(run / "policy" / "model.safetensors"), load_file(single / "policy" / "model.safetensors")  # fsdp: gathered
    assert saved.keys() == expected.keys() and max(float((saved[key] - expected[key]).abs().max()) for key in expected) < TOLERANCE

    arrays, meta, _ = load_checkpoint(checkpoint(run, 1), framework="pt")
    assert meta["world_size"] == 2
    assert not torch.equal(arrays["rank0.rng.torch"], arrays["rank1.rng.torch"])  # each rank samples with a stream of its own
    assert not torch.equal(arrays["rank0.rng.minibatch_order"], arrays["rank1.rng.minibatch_order"])
    assert len((run / "progress.csv").read_text().splitlines()) == 3  # rank 0 alone logs: a header and 2 rows

    # --resume with 2 ranks from update 1 ends where the uninterrupted run did, bit for bit
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    shutil.rmtree(checkpoint(resumed, 2))
    torchrun("ppo", "--resume", resumed)
    assert max_difference(model_arrays(resumed), model_arrays(run)) == 0.0

    # another world size: a clear error naming both
    with pytest.raises(CheckpointError, match=r"written by a run of 2 process\(es\); resume it with the same number .* not 1"):
        LMPPOTrainer.resume(checkpoint(run, 1), progress=False, verbose=False)

    # but the 2-process run's policy serves one process: `lm generate` on the policy folder and on the run dir
    for model in (run / "policy", run):
        generated = subprocess.run([sys.executable, "-m", "ppokit", "lm", "generate", str(model), "--prompt", "3 1 2 =", "--greedy", "--raw",
                                    "--max-new-tokens", "7"], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        assert generated.returncode == 0, generated.stderr
        assert json.loads(generated.stdout.splitlines()[-1])["prompt"] == "3 1 2 ="


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_group_estimator_two_ranks_make_the_single_process_update(saved_model, tmp_path, estimator):
    """A fixed batch of 4 groups of 2 responses: 2 ranks holding 2 whole groups each make the update one process makes on
    all 8 (group statistics, the loss aggregated over sequences, the KL term in the loss, gradient accumulation)."""
    import numpy as np
    from distributed_worker import lm_group_update

    spec = {"prompts": _prompts(4), "config": {
        "policy": str(saved_model), "advantage_estimator": estimator, "samples_per_prompt": 2, "kl_penalty": "loss", "kl_coef": 0.1,
        "loss_aggregation": "seq-mean-token-mean", "batch_size": 8, "minibatch_size": 8, "grad_accum_steps": 2, "n_epochs": 2, "max_new_tokens": 7,
        "learning_rate": 1e-4, "torch_threads": 1, "tensorboard": False, "seed": 3}}
    worker = Path(__file__).parent / "distributed_worker.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker), "lm-group-update", str(tmp_path),
               json.dumps(spec)]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1"),
                            timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rank0, rank1 = (np.load(tmp_path / f"weights-rank{rank}.npy") for rank in (0, 1))
    np.testing.assert_array_equal(rank0, rank1)
    single = lm_group_update(spec)  # this process: a world of one, on all 8 responses
    assert np.abs(rank0 - single).max() < TOLERANCE
    assert np.abs(single - lm_group_update(spec, update=False)).max() > 1e-5  # the update moved the weights: the comparison says something


# ---------------------------------------------------------------- SFT and the reward model
def _supervised_rows(folder: Path, kind: str) -> dict:
    rng = random.Random(0)
    if kind == "sft":  # 9 rows in batches of 8: the last batch has one row, which rank 1 does not get
        rows = [{"prompt": p, "completion": " ".join(sorted(p.split()[:-1]))} for p in _prompts(11, seed=1)]
        train, held_out = rows[:9], rows[9:]
    else:
        rows = [{"prompt": p, "chosen": " ".join(sorted(p.split()[:-1])), "rejected": " ".join(rng.sample(p.split()[:-1], 5))}
                for p in _prompts(10, seed=2)]
        train, held_out = rows[:8], rows[8:]
    return {"data": str(write_jsonl(folder / "train.jsonl", train)), "eval_data": str(write_jsonl(folder / "eval.jsonl", held_out))}


@pytest.mark.parametrize("kind, parallel", [("sft", "ddp"), ("sft", "fsdp"), ("rm", "ddp"), ("rm", "fsdp")])
def test_supervised_two_ranks_make_the_single_process_steps(saved_model, tmp_path, kind, parallel):
    trainer_class, config_class = {"sft": (SFTTrainer, SFTConfig), "rm": (RewardModelTrainer, RewardModelConfig)}[kind]
    values = {"model": str(saved_model), **_supervised_rows(tmp_path, kind), "epochs": 1, "batch_size": 8, "learning_rate": 1e-4, "adam_eps": 1e-5,
              "checkpoint_interval": 1, "keep_checkpoints": 5, "tensorboard": False, "torch_threads": 1}
    if kind == "rm":
        values["center_rewards_coef"] = 0.01
    single = tmp_path / "single"
    trainer_class(config_class.from_dict(values), run_dir=single, progress=False, verbose=False).train()
    run = tmp_path / "run"
    torchrun(kind, "--run-dir", run, *as_arguments(values | {"parallel": parallel}))
    assert max_difference(model_arrays(checkpoint(run, 1)), model_arrays(checkpoint(single, 1))) < TOLERANCE  # one step
    assert max_difference(model_arrays(run), model_arrays(single)) < TOLERANCE  # the last one
    saved, expected = load_file(run / "model" / "model.safetensors"), load_file(single / "model" / "model.safetensors")
    assert max(float((saved[key] - expected[key]).abs().max()) for key in expected) < TOLERANCE
    assert json.loads((run / "results.json").read_text()) == pytest.approx(json.loads((single / "results.json").read_text()), abs=1e-5)
    base = load_file(saved_model / "model.safetensors")
    shared = [key for key in saved if key in base and saved[key].shape == base[key].shape]
    assert shared and max(float((saved[key] - base[key]).abs().max()) for key in shared) > 1e-5  # the steps moved the weights


def test_parallel_key_is_checked():
    with pytest.raises(ConfigError, match=r"parallel must be one of \['ddp', 'fsdp'\], got 'zero3'"):
        SFTConfig.from_dict({"parallel": "zero3"})
    with pytest.raises(ConfigError, match=r"parallel=fsdp does not support lora"):
        LMPPOConfig.from_dict({"parallel": "fsdp", "lora": {"r": 4}})
