"""ppokit tune: tiny studies on CartPole (a few short trials), workers sharing one SQLite study, pruning,
failed trials, Ctrl-C and continuing, and bad input."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from ppokit.cli import main
from ppokit.config import load_yaml
from ppokit.errors import ConfigError
from ppokit.gym.config import PPOConfig
from ppokit.tune.search_space import load_search_space
from ppokit.tune.study import TuneSettings, counted_trials, open_study, run_trials, trial_config

TINY = ["--no-preset", "--total-steps", "1024", "--evaluations", "2", "--eval-episodes", "2", "n_envs=2"]


def _study(study_dir: Path, name: str = "tune-CartPole-v1"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{study_dir / 'tune.db'}")


def _tune(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "ppokit", "tune", *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def test_a_tiny_study_writes_its_outputs_and_the_best_config_trains(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["tune", "CartPole-v1", "--trials", "3", "--study-dir", str(out), "--sampler-seed", "0", *TINY]) == 0
    printed = capsys.readouterr().out
    assert printed.count("ppokit: trial ") == 3 and "best: trial" in printed
    for name in ("tune.db", "trials.csv", "best.yaml", "history.png", "importance.png", "study.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [0, 1, 2] and all(r["state"] == "COMPLETE" for r in rows)
    study = _study(out)
    assert study.best_value == max(float(r["score"]) for r in rows)
    best = load_yaml(out / "best.yaml")  # a --config file: only config keys
    config = PPOConfig.from_dict(best)
    assert config.total_steps == 1024 and config.n_envs == 2
    sampled = study.best_trial.user_attrs["config"]
    assert config.learning_rate == pytest.approx(sampled["learning_rate"]) and config.hidden_sizes == sampled["hidden_sizes"]
    assert isinstance(config.hidden_sizes, list)  # a list choice comes back as a list
    # the same command again: the study has its trials and runs no more
    assert main(["tune", "CartPole-v1", "--trials", "3", "--study-dir", str(out), *TINY]) == 0
    assert len(_study(out).trials) == 3


def test_two_worker_processes_share_one_sqlite_study(tmp_path):
    out = tmp_path / "study"
    result = _tune("CartPole-v1", "--trials", "6", "--n-jobs", "2", "--study-dir", out, *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _study(out).trials
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) and 6 <= len(trials) <= 7  # (a worker may start one trial as the other ends the study)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # both processes ran trials
    samples = [tuple(sorted((k, str(v)) for k, v in t.params.items())) for t in trials]
    assert len(set(samples)) == len(samples)  # no trial sampled twice


def test_the_median_pruner_stops_a_trial_at_its_evaluation(tmp_path):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1e9))  # prunes every report
    # n_steps fixed: 16 updates, the first evaluation after 4 of them (a sampled 1024 would make it the last, which is never pruned)
    space = [d for d in load_search_space() if d.key != "n_steps"]
    settings = TuneSettings(env_id="CartPole-v1", base={"n_envs": 2, "n_steps": 64}, dimensions=space, total_steps=2048, eval_episodes=2,
                            evaluations=4)
    run_trials(study, settings, trials=2, timeout=None)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert all(len(t.intermediate_values) == 1 for t in study.trials)  # stopped at the first evaluation, not trained on
    assert counted_trials(study) == 2
    # the last evaluation of the last seed is the trial's score: it completes, however it compares
    settings.evaluations = 1
    run_trials(study, settings, trials=3, timeout=None)
    assert study.trials[-1].state.name == "COMPLETE" and len(study.trials[-1].intermediate_values) == 1


def test_failed_trials_are_recorded_with_their_message_and_the_study_goes_on(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("clip_range: {type: categorical, choices: [-1.0]}\nlearning_rate: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}\n")
    out = tmp_path / "study"
    assert main(["tune", "CartPole-v1", "--trials", "2", "--study-dir", str(out), "--search-space", str(space), *TINY]) == 0
    trials = _study(out).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert all("clip_range" in t.user_attrs["error"] for t in trials)
    assert "no trial has completed yet" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert all("clip_range" in r["error"] for r in rows)


def test_ctrl_c_ends_the_study_cleanly_and_the_same_command_continues_it(tmp_path):
    out = tmp_path / "study"
    args = ["CartPole-v1", "--trials", "2", "--study-dir", out, "--no-preset", "--total-steps", "200000", "--evaluations", "2",
            "--eval-episodes", "2", "n_envs=2"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "ppokit", "tune", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while not (out / "study.json").is_file() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # inside the first trial's training
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "run the same command again to continue" in stdout
    trials = _study(out).trials
    assert [t.state.name for t in trials] == ["FAIL"] and trials[0].user_attrs["interrupted"]
    # again, with a budget that ends quickly: the interrupted trial does not count
    args[args.index("200000")] = "1024"
    result = _tune(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    study = _study(out)
    assert counted_trials(study) == 2 and len(study.trials) == 3


@pytest.mark.parametrize("text, message", [
    ("learning_rat: {type: float, low: 1.0e-5, high: 1.0e-3}", r"space\.yaml'.*key 'learning_rat': not a config key.*learning_rate"),
    ("learning_rate: {type: uniform, low: 1.0e-5, high: 1.0e-3}",
     r"key 'learning_rate': distribution 'uniform' is not one of Optuna's: float, int, categorical"),
    ("learning_rate: {type: float, low: 0.0, high: 1.0e-3, log: true}", r"log distribution needs low > 0"),
    ("seed: {type: int, low: 0, high: 9}", r"the study sets seed for every trial"),
])
def test_a_bad_search_space_names_the_key_and_the_file(tmp_path, text, message):
    space = tmp_path / "space.yaml"
    space.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_search_space(space)


def test_a_storage_or_env_that_cannot_be_used_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"storage 'sqlite:////no/such/folder/tune\.db' cannot be opened"):
        open_study("sqlite:////no/such/folder/tune.db", "x")
    with pytest.raises(ConfigError, match=r"storage 'nosuchdb://host/x' cannot be opened"):
        open_study("nosuchdb://host/x", "x")
    assert main(["tune", "NoSuchEnv-v0", "--trials", "1", "--study-dir", str(tmp_path / "s")]) == 2


def test_every_sample_of_the_default_space_is_a_valid_config():
    """Keys sampled apart stay consistent: minibatch_size never exceeds a rollout, a rollout fits the budget (also for an LSTM)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for base in ({"n_envs": 8}, {"n_envs": 16, "policy": "lstm"}):
        settings = TuneSettings(env_id="CartPole-v1", base=PPOConfig().to_dict() | base, dimensions=load_search_space(), total_steps=4096)
        for _ in range(40):
            trial = study.ask()
            config = PPOConfig.from_dict(trial_config(settings, {d.key: d.sample(trial) for d in settings.dimensions}))
            assert config.minibatch_size <= config.rollout_size <= 4096
            study.tell(trial, 0.0)
