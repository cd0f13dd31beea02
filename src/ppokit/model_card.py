"""A README.md for a run directory: env, hyperparameters, evaluation and the learning curve, so the
folder can be uploaded to a model hub by hand as it is."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

import ppokit


def write_model_card(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    env_id = config.get("env_id") or "a custom environment"
    recurrent = config.get("policy") == "lstm"  # predict() then takes and returns the memory
    lines = [
        "---",
        "library_name: ppokit",
        "tags: [reinforcement-learning, ppo, gymnasium]",
        f"model-index:\n- name: ppo-{env_id}",
        "---",
        "",
        f"# PPO on {env_id}",
        "",
        f"Trained with ppokit {ppokit.__version__} (Proximal Policy Optimization)"
        + (f", preset `{config['preset']}`." if config.get("preset") else "."),
        "",
    ]
    eval_path = run_dir / "eval.json"
    if eval_path.is_file():
        result = json.loads(eval_path.read_text())
        mode = "deterministic" if result.get("deterministic") else "stochastic"
        summary = f"Mean return **{result['mean_return']:.2f} +- {result['std_return']:.2f}** over {result['episodes']} {mode} episodes."
        lines += ["## Evaluation", "", summary, ""]
    if (run_dir / "curves.png").is_file():
        lines += ["## Learning curve", "", "![episodic return during training](curves.png)", ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from ppokit import PPO",
        "",
        'agent = PPO.load("path/to/this/folder")   # safetensors + JSON: loading runs no code',
        *(["state = None   # the LSTM's memory: None at an episode's start",
           "action, state = agent.predict(observation, state=state, deterministic=True)"]
          if recurrent else ["action = agent.predict(observation, deterministic=True)"]),
        "```",
        "",
        "Files: `model.safetensors` (weights and normalizer statistics), `model.json` (config, spaces),",
        "`config.yaml`, `progress.csv` and TensorBoard events of the training run.",
        "",
        "## Hyperparameters",
        "",
        "| key | value |",
        "|---|---|",
    ]
    lines += [f"| `{key}` | `{value}` |" for key, value in config.items()]
    path = run_dir / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
