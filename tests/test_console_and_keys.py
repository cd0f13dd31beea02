"""What a person reads: a console of a bounded number of summary lines, every config key listed where the command line
and the README show them (the same list as the config dataclasses), and messages that say what was wrong."""

import dataclasses
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from ppokit.cli import main
from ppokit.config import parse_overrides
from ppokit.config_keys import config_classes, markdown_table, readme_block
from ppokit.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def _summary_lines(output: str) -> list[int]:
    return [int(line.split("|")[0].split()[1]) for line in output.splitlines() if line.startswith("update ")]


@pytest.mark.parametrize("extra, expected", [([], None), (["log_interval=7"], [7 * i for i in range(1, 15)] + [100]), (["--quiet"], [])])
def test_console_prints_a_bounded_number_of_summaries_and_the_last_one(tmp_path, extra, expected):
    run = tmp_path / "run"
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["train", "CartPole-v1", "--total-steps", "6400", "--run-dir", str(run), "--no-progress", "n_envs=4", "n_steps=16", "n_epochs=1",
                     "minibatch_size=64", "eval_episodes=1", "tensorboard=false", *extra]) == 0
    updates = _summary_lines(out.getvalue())
    if expected is None:  # the default: about 20 lines, every fifth update of 100, always the last
        assert updates == [5 * i for i in range(1, 21)]
    else:
        assert updates == expected
    assert len((run / "progress.csv").read_text().splitlines()) == 1 + 100  # the log keeps every update


def test_language_model_logs_bound_their_console_too(capsys):
    from ppokit.run_logging import MetricsLogger

    logger = MetricsLogger(None, ["step", "x/y"], total=90, unit="step", progress=False, console=True, log_interval=0, last_step=90)
    for step in range(1, 91):
        logger.log(step, step, {"x/y": 1.0}, ["x/y"])
    logger.close()
    steps = [int(line.split()[1]) for line in capsys.readouterr().out.splitlines() if line.startswith("step")]
    assert steps == [5 * i for i in range(1, 19)]  # 90 steps: every 5th, the last among them


@pytest.mark.parametrize("name", ["train", "sft", "rm", "ppo"])
def test_every_key_is_listed_by_ppokit_keys_and_the_readme(name, capsys):
    cls = config_classes()[name]
    assert readme_block(README.read_text(), name) == markdown_table(cls), "run: python -m ppokit.config_keys README.md"
    assert main(["keys", name]) == 0
    listed = [line.split(" = ")[0].strip() for line in capsys.readouterr().out.splitlines() if " = " in line and line.startswith("  ") and
              not line.startswith("      ")]
    assert listed == [field.name for field in dataclasses.fields(cls)]


def test_help_of_the_training_commands_lists_their_keys():
    for command in (["train"], ["lm", "ppo"], ["lm", "sft"]):
        result = subprocess.run([sys.executable, "-m", "ppokit", *command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "config keys (key=value, or in --config FILE)" in result.stdout
    assert "advantage_estimator = gae" in subprocess.run([sys.executable, "-m", "ppokit", "lm", "ppo", "--help"], capture_output=True,
                                                         text=True).stdout


def test_a_mapping_key_given_something_else_says_a_mapping_was_expected():
    from ppokit.gym.config import PPOConfig
    from ppokit.lm.config import LMPPOConfig

    with pytest.raises(ConfigError, match=r"lora must be a mapping .*got 'alphaa:16'"):
        LMPPOConfig.from_dict(parse_overrides(["lora=alphaa:16"]))
    with pytest.raises(ConfigError, match=r"env_kwargs must be a mapping .*got 'continuous'"):
        PPOConfig.from_dict(parse_overrides(["env_kwargs=continuous"]))
    with pytest.raises(ConfigError, match=r"lora has unknown keys \['alpah'\]"):
        LMPPOConfig.from_dict(parse_overrides(["lora={alpah: 16}"]))


def _ppokit(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "ppokit", *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("command", [
    ["lm", "generate", "{missing}", "--prompt", "hi"],
    ["lm", "sft", "model={missing}", "data={data}"],
    ["lm", "rm", "model={missing}", "data={data}"],
    ["lm", "ppo", "policy={missing}", "prompts={data}"],
    ["lm", "ppo", "policy={model}", "prompts={data}", "reward_model={missing}"],
])
def test_a_model_path_that_does_not_exist_is_named_as_a_missing_folder(command, tmp_path, saved_model):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"prompt": "3 1 2 =", "completion": "1 2 3"}) + "\n")
    missing = tmp_path / "no" / "such-model"
    result = _ppokit(*[part.format(missing=missing, data=data, model=saved_model) for part in command], "--run-dir", tmp_path / "run") \
        if command[1] != "generate" else _ppokit(*[part.format(missing=missing) for part in command])
    assert result.returncode != 0
    assert f"the folder '{missing}' does not exist" in result.stderr, result.stderr[-1500:]


def test_a_name_that_is_no_folder_is_reported_as_a_hub_id_that_could_not_be_fetched():
    result = _ppokit("lm", "generate", "NOPE", "--prompt", "hi")
    assert result.returncode != 0
    assert "'NOPE' is not a folder here, so it was taken for a hub model id" in result.stderr and "could not be fetched" in result.stderr
