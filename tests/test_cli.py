import csv
import json
import subprocess
import sys

import pytest
import yaml

from ppokit.cli import main


def test_train_then_eval_writes_run_dir(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "CartPole-v1", "--total-steps", "768", "--seed", "4", "--run-dir", str(run), "--no-progress", "eval_episodes=3", "n_epochs=2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "evaluation over 3 deterministic episodes: mean return" in out
    assert f"run saved to {run}" in out
    assert "update     1" in out  # console summary per update

    for name in ["model.safetensors", "model.json", "progress.csv", "config.yaml", "eval.json"]:
        assert (run / name).is_file(), name
    assert list(run.glob("events.out.tfevents.*")), "TensorBoard events missing"

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["seed"] == 4 and config["n_epochs"] == 2 and config["preset"] == "CartPole-v1" and config["n_steps"] == 32

    rows = list(csv.DictReader((run / "progress.csv").open()))
    assert [int(r["update"]) for r in rows] == [1, 2, 3]
    # CartPole runs on gymnasium's numpy vector env: its reset steps are not transitions and not counted
    steps = [0] + [int(r["global_step"]) for r in rows]
    assert all(200 < b - a <= 256 for a, b in zip(steps, steps[1:])), steps
    for column in ["time_elapsed", "charts/episodic_return", "losses/policy_loss", "losses/approx_kl", "losses/clipfrac", "losses/explained_variance",
                   "charts/SPS"]:
        assert rows[-1][column] != "", column
    assert float(rows[0]["time_elapsed"]) < float(rows[-1]["time_elapsed"])

    record = (run / "eval.json").read_text()
    assert main(["eval", str(run), "--episodes", "4", "--deterministic"]) == 0
    assert "mean return" in capsys.readouterr().out
    result = json.loads((run / "eval-4-deterministic-seed10004.json").read_text())  # a file of its own, named by its settings
    assert result["episodes"] == 4 and len(result["returns"]) == 4 and result["deterministic"] is True
    assert result["mean_return"] == pytest.approx(sum(result["returns"]) / 4)
    assert (run / "eval.json").read_text() == record  # the run's record, which the model card quotes, is left as it was


def test_config_file_and_precedence(tmp_path):
    from ppokit.gym.cli import resolve_train_config

    file = tmp_path / "c.yaml"
    file.write_text("learning_rate: 0.005\nn_envs: 4\n")
    config, preset = resolve_train_config("CartPole-v1", None, False, str(file), ["n_envs=16"], seed=9, total_steps=4096)
    assert preset == "CartPole-v1"
    assert config.learning_rate == 0.005 and config.n_envs == 16 and config.seed == 9 and config.total_steps == 4096
    assert config.gamma == 0.98  # from the preset
    defaults, preset = resolve_train_config("CartPole-v1", None, True, None, [], None, None)
    assert preset is None and defaults.gamma == 0.99


def test_env_without_preset_runs_on_defaults(tmp_path):
    import dataclasses

    from ppokit.gym.config import PPOConfig

    code = main(["train", "MountainCar-v0", "--total-steps", "2048", "--run-dir", str(tmp_path), "--no-progress", "--quiet", "eval_episodes=1"])
    assert code == 0
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["preset"] is None
    # every key is PPOConfig's default, but the two given on the command line
    defaults = {field.name: getattr(PPOConfig(), field.name) for field in dataclasses.fields(PPOConfig)}
    assert {key: saved[key] for key in defaults} == defaults | {"total_steps": 2048, "eval_episodes": 1}
    assert json.loads((tmp_path / "model.json").read_text())["config"] == {key: saved[key] for key in defaults}  # and the model was trained with them


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["presets"]])
def test_help(command):
    result = subprocess.run([sys.executable, "-m", "ppokit.cli", *command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "usage: ppokit" in result.stdout

