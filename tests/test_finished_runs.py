"""A finished run stays finished: `--resume` of a run that has ended changes nothing and says so (exit 0), for the
Gymnasium trainer and the three language-model trainers; training further is asked for with the new total."""

import csv
import json
import random

import pytest
import yaml

from ppokit.checkpoint import list_checkpoints
from ppokit.cli import main
from ppokit.lm.data import write_jsonl
from ppokit.lm.tasks import get_task

SORT = get_task("sort")


def _snapshot(run, names):
    return {name: (run / name).read_bytes() for name in names}


def _rows(run, column):
    with open(run / "progress.csv", newline="") as f:
        return [int(float(row[column])) for row in csv.DictReader(f)]


def test_gym_resume_of_a_finished_run_changes_nothing_and_the_new_total_trains_further(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "CartPole-v1", "--total-steps", "1024", "--run-dir", str(run), "--no-progress", "--quiet", "eval_episodes=2",
                 "n_envs=4", "n_steps=64", "n_epochs=1"]) == 0
    kept = ["model.safetensors", "model.json", "eval.json", "README.md", "progress.csv", "config.yaml"]
    before = _snapshot(run, kept)
    checkpoints = list_checkpoints(run)
    capsys.readouterr()

    assert main(["train", "--resume", str(run), "--no-progress", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{run} has finished (update 4, step " in out and "nothing to do" in out and "--total-steps N" in out
    assert _snapshot(run, kept) == before  # no weight, record or log rewritten
    assert list_checkpoints(run) == checkpoints

    assert main(["train", "--resume", str(run), "--total-steps", "2048", "--no-progress", "--quiet"]) == 0
    assert _rows(run, "update") == list(range(1, 9))  # four more updates, logged once each
    assert yaml.safe_load((run / "config.yaml").read_text())["total_steps"] == 2048
    assert (run / "model.safetensors").read_bytes() != before["model.safetensors"]

    from ppokit.errors import ConfigError
    from ppokit.gym.agent import PPO

    with pytest.raises(ConfigError, match=r"total_steps=1,500 is not beyond the 1,9\d\d steps this run has trained; give the new total"):
        PPO.load(run).extend_to(1500)


def test_gym_api_learn_on_a_finished_run_is_a_no_op(tmp_path):
    from ppokit.gym.agent import PPO

    config = {"n_envs": 4, "n_steps": 64, "n_epochs": 1, "total_steps": 512, "tensorboard": False}
    PPO("CartPole-v1", config, run_dir=tmp_path, verbose=False).learn()
    agent = PPO.load(tmp_path, verbose=False)
    assert agent.finished
    agent.learn()
    assert agent.num_updates == 2 and agent.global_step < 600
    agent.learn(total_steps=256)  # asked for explicitly: trains
    assert agent.num_updates == 3


def _ppo_arguments(saved_model, folder):
    rng = random.Random(0)
    prompts = write_jsonl(folder / "prompts.jsonl", ({"prompt": SORT.sample_prompt(rng)} for _ in range(16)))
    return [f"policy={saved_model}", f"prompts={prompts}", "reward_function=[ppokit.lm.tasks:sort_gold_reward]", "batch_size=8", "minibatch_size=8",
            "n_epochs=1", "total_episodes=16", "max_new_tokens=7", "tensorboard=false", "torch_threads=1"]


def test_lm_ppo_resume_of_a_finished_run_changes_nothing_and_total_episodes_trains_further(saved_model, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["lm", "ppo", "--run-dir", str(run), "--no-progress", "--quiet", *_ppo_arguments(saved_model, tmp_path)]) == 0
    kept = ["policy/model.safetensors", "progress.csv", "run.json"]
    before = _snapshot(run, kept)
    capsys.readouterr()
    assert main(["lm", "ppo", "--resume", str(run), "--no-progress", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{run} has finished (update 2); nothing to do" in out and "total_episodes=N" in out
    assert _snapshot(run, kept) == before

    assert main(["lm", "ppo", "--resume", str(run), "--no-progress", "--quiet", "total_episodes=32"]) == 0
    assert _rows(run, "step") == [1, 2, 3, 4]
    assert (run / "policy/model.safetensors").read_bytes() != before["policy/model.safetensors"]
    from ppokit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"total_episodes=8: to train a resumed run further, give the new total, an integer larger than the run's "
                                          r"total_episodes=32"):
        from ppokit.lm.ppo import LMPPOTrainer

        LMPPOTrainer.resume(run, overrides={"total_episodes": 8})


@pytest.mark.parametrize("trainer", ["sft", "rm"])
def test_lm_supervised_resume_of_a_finished_run_changes_nothing_and_epochs_trains_further(saved_model, tmp_path, capsys, trainer):
    rng = random.Random(1)
    prompts = [SORT.sample_prompt(rng) for _ in range(10)]
    if trainer == "sft":
        rows = [{"prompt": p, "completion": " ".join(sorted(p.split()[:-1]))} for p in prompts]
    else:
        rows = [{"prompt": p, "chosen": " ".join(sorted(p.split()[:-1])), "rejected": " ".join(p.split()[:-1])} for p in prompts]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    run = tmp_path / "run"
    common = ["--no-progress", "--quiet"]
    assert main(["lm", trainer, "--run-dir", str(run), *common, f"model={saved_model}", f"data={data}", "epochs=1", "batch_size=4",
                 "tensorboard=false", "torch_threads=1"]) == 0
    kept = ["model/model.safetensors", "results.json", "progress.csv"]
    before = _snapshot(run, kept)
    assert list_checkpoints(run)  # the end is checkpointed, so a resume knows the run finished
    capsys.readouterr()
    assert main(["lm", trainer, "--resume", str(run), *common]) == 0
    assert f"{run} has finished (step 3); nothing to do" in capsys.readouterr().out
    assert _snapshot(run, kept) == before

    assert main(["lm", trainer, "--resume", str(run), *common, "epochs=2"]) == 0
    assert _rows(run, "step") == list(range(1, 7))
    assert json.loads((run / "results.json").read_text())["steps"] == 6
