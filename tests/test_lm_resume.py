"""Exact resume of the three language-model trainers: a run continued from a checkpoint ends with
bitwise the same weights as one never interrupted (CPU, one thread), logs each step once, and a
signal to the command line leaves a checkpoint and exit status 130."""

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from ppokit.checkpoint import list_checkpoints, load_checkpoint
from ppokit.errors import CheckpointError, ConfigError
from ppokit.lm.config import LMPPOConfig, RewardModelConfig, SFTConfig
from ppokit.lm.data import write_jsonl
from ppokit.lm.ppo import LMPPOTrainer
from ppokit.lm.reward_model import RewardModelTrainer
from ppokit.lm.sft import SFTTrainer
from ppokit.lm.tasks import get_task, sort_gold_reward

SORT = get_task("sort")


def _prompts(n, seed=0):
    rng = random.Random(seed)
    return [SORT.sample_prompt(rng) for _ in range(n)]


def _steps(run_dir):
    with open(run_dir / "progress.csv", newline="") as f:
        return [int(float(row["step"])) for row in csv.DictReader(f)]


def _rewind(run_dir, copy_to, keep_step):
    """A copy of a finished run as it was when the checkpoint of ``keep_step`` was its newest (later ones removed)."""
    shutil.copytree(run_dir, copy_to)
    for checkpoint in list_checkpoints(copy_to):
        if int(checkpoint.name.split("_")[1]) > keep_step:
            shutil.rmtree(checkpoint)
    return copy_to


def _assert_same_parameters(first, second):
    first, second = dict(first.named_parameters()), dict(second.named_parameters())
    assert first.keys() == second.keys()
    for name, parameter in first.items():
        assert torch.equal(parameter, second[name]), name


@pytest.mark.parametrize("variant", [{}, {"precision": "bf16", "lora": {"r": 4, "alpha": 8, "target_modules": ["c_attn"]}}], ids=["full", "lora-bf16"])
def test_resumed_ppo_run_ends_with_bitwise_identical_weights(saved_model, tmp_path, variant):
    values = {"policy": str(saved_model), "batch_size": 8, "minibatch_size": 4, "n_epochs": 2, "total_episodes": 8 * 5, "max_new_tokens": 7,
              "learning_rate": 1e-3, "checkpoint_interval": 2, "keep_checkpoints": 5, "adaptive_kl": True, "kl_target": 0.5, "kl_horizon": 100,
              "torch_threads": 1, "seed": 4, **variant}
    given = {"reward": sort_gold_reward, "prompts": _prompts(28), "progress": False, "verbose": False}  # 28: a pass ends mid-batch
    full = LMPPOTrainer(LMPPOConfig.from_dict(values), run_dir=tmp_path / "full", **given)
    full.train()
    assert [p.name for p in list_checkpoints(tmp_path / "full")] == [f"update_{n:09d}" for n in (2, 4, 5)]

    arrays, _, _ = load_checkpoint(tmp_path / "full", framework="pt")
    policy_keys = [key for key in arrays if key.startswith("model.policy.")]
    assert policy_keys and all(("lora_" in key) == ("lora" in variant) for key in policy_keys)  # LoRA: the adapter only
    resumed = LMPPOTrainer.resume(_rewind(tmp_path / "full", tmp_path / "resumed", keep_step=2), **given)
    assert (resumed.num_updates, resumed.episodes) == (2, 16)
    resumed.train()
    assert resumed.num_updates == full.num_updates == 5
    _assert_same_parameters(full.policy, resumed.policy)
    _assert_same_parameters(full.value_model, resumed.value_model)
    assert resumed.kl_controller.value == full.kl_controller.value != 0.05  # the adaptive coefficient moved, and came back
    assert torch.equal(resumed.score_moments.var, full.score_moments.var)
    assert _steps(tmp_path / "resumed") == [1, 2, 3, 4, 5]  # rows after the checkpoint were dropped, then written once
    assert [round(r["env/kl_coef"], 12) for r in resumed.history] == [round(r["env/kl_coef"], 12) for r in full.history]


def test_resumed_sft_and_reward_model_runs_end_with_bitwise_identical_weights(saved_model, tmp_path):
    rng = random.Random(0)
    sft_rows = [{"prompt": p, "completion": " ".join(sorted(p.split()[:-1]))} for p in _prompts(22, seed=1)]
    pairs = [{"prompt": p, "chosen": " ".join(sorted(p.split()[:-1])), "rejected": " ".join(rng.sample(p.split()[:-1], 5))} for p in _prompts(22, seed=2)]
    for trainer_class, config_class, rows in ((SFTTrainer, SFTConfig, sft_rows), (RewardModelTrainer, RewardModelConfig, pairs)):
        config = {"model": str(saved_model), "epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "checkpoint_interval": 4, "keep_checkpoints": 5,
                  "torch_threads": 1, "tensorboard": False}
        given = {"train_rows": rows[:18], "eval_rows": rows[18:], "progress": False, "verbose": False}
        run = tmp_path / trainer_class.trainer_name
        full = trainer_class(config_class.from_dict(config), run_dir=run, **given)
        full_result = full.train()  # 5 steps per epoch: checkpoints at 4 (mid-epoch 1) and 8 (mid-epoch 2)
        resumed = trainer_class.resume(_rewind(run, tmp_path / f"{run.name}-resumed", keep_step=4), **given)
        assert resumed.step == 4
        resumed_result = resumed.train()
        assert resumed.step == full.step == 10
        _assert_same_parameters(full.model, resumed.model)
        assert resumed_result == full_result  # the held-out metrics before training came back from the checkpoint too
        assert _steps(tmp_path / f"{run.name}-resumed") == list(range(1, 11))


def test_resume_refuses_another_trainers_checkpoint_and_config_changes(saved_model, tmp_path):
    rows = [{"prompt": "3 1 2 =", "completion": "1 2 3"}] * 4
    SFTTrainer(SFTConfig.from_dict({"model": str(saved_model), "epochs": 1, "batch_size": 2, "checkpoint_interval": 1, "tensorboard": False}),
               run_dir=tmp_path, train_rows=rows, eval_rows=rows[:1], progress=False, verbose=False).train()
    with pytest.raises(CheckpointError, match=r"a checkpoint of 'sft', not of 'lm_ppo'"):
        LMPPOTrainer.resume(tmp_path, reward=sort_gold_reward)
    with pytest.raises(ConfigError, match=r"only \['device', 'epochs'\] may be changed .*not \['learning_rate'\]"):
        SFTTrainer.resume(tmp_path, overrides={"learning_rate": 1.0}, train_rows=rows)
    with pytest.raises(CheckpointError, match=r"holds no ppokit checkpoint"):
        SFTTrainer.resume(tmp_path / "model", train_rows=rows)


def test_sigint_checkpoints_and_exits_130_then_resume_finishes(saved_model, tmp_path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", ({"prompt": p} for p in _prompts(40)))
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "ppokit.cli", "lm", "ppo", f"policy={saved_model}", f"prompts={prompts}", "--run-dir", str(run), "--no-progress",
               "--quiet", "reward_function=[ppokit.lm.tasks:sort_gold_reward]", "batch_size=8", "minibatch_size=8", "n_epochs=1",
               "total_episodes=2400", "max_new_tokens=7", "checkpoint_interval=1000", "tensorboard=false", "torch_threads=1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "progress.csv").exists() and len(_steps(run)) >= 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"ppokit lm ppo --resume {run}" in stderr
    stopped_at = int(list_checkpoints(run)[-1].name.split("_")[1])
    assert 3 <= stopped_at < 300 and _steps(run) == list(range(1, stopped_at + 1))

    result = subprocess.run([sys.executable, "-m", "ppokit.cli", "lm", "ppo", "--resume", str(run), "--no-progress", "--quiet"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"at update {stopped_at}" in result.stdout
    assert _steps(run) == list(range(1, 301))
    assert (run / "policy" / "model.safetensors").is_file()
