"""`ppokit lm demo instructions`: GRPO makes a real pretrained chat model follow format instructions it did not follow.

The model is SmolLM2-135M-Instruct as `make real-model` builds it offline (or any chat model folder, ``--model``). The
task is ``ppokit.lm.instruction_task``: a question about a topic plus one format instruction a program checks. The
demo scores the held-out prompts (other topics than the training prompts) before training, trains with GRPO (4
samples per prompt, one epoch, a small KL term to the starting model in the loss), scores them again, and writes
results.json (the held-out greedy score and pass@k before and after, sample completions) and results.png (training
reward, held-out score, KL, response length).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ppokit.errors import ConfigError
from ppokit.lm.config import LMPPOConfig
from ppokit.lm.instruction_task import instruction_reward, make_prompts
from ppokit.lm.ppo import LMPPOTrainer

DEFAULT_MODEL = Path("models") / "smollm2-135m-instruct"
TRAIN_PROMPTS, HELD_OUT_PROMPTS = 512, 32
SETTINGS = {"advantage_estimator": "grpo", "samples_per_prompt": 4, "batch_size": 32, "minibatch_size": 16, "n_epochs": 1, "learning_rate": 2e-5,
            "kl_penalty": "loss", "kl_coef": 0.02, "max_new_tokens": 32, "temperature": 1.0, "eval_interval": 4, "eval_samples": 4,
            "log_completions": 4, "total_episodes": 384}


def run_real_demo(run_dir: str | Path, model: str | Path = DEFAULT_MODEL, seed: int = 0, overrides: dict | None = None,
                  progress: bool | None = None, say=print) -> dict:
    """Train and score; returns what results.json holds."""
    model, run_dir = Path(model), Path(run_dir)
    if not model.is_dir():
        raise ConfigError(f"the model folder {str(model)!r} does not exist; build SmolLM2-135M-Instruct with `make real-model` "
                          f"(python benchmarks/lm/real_model.py {DEFAULT_MODEL}), or pass --model with a chat model's folder")
    started = time.perf_counter()
    config = LMPPOConfig.from_dict({"policy": str(model), "seed": seed, **SETTINGS, **(overrides or {})})
    trainer = LMPPOTrainer(config, run_dir, reward=instruction_reward, prompts=make_prompts(TRAIN_PROMPTS, seed=1 + 1000 * seed),
                           eval_prompts=make_prompts(HELD_OUT_PROMPTS, seed=7, held_out=True), progress=progress, verbose=False)
    k = config.eval_samples
    say(f"ppokit: {model} on {trainer.device} ({trainer.precision.name}); scoring {HELD_OUT_PROMPTS} held-out prompts before training")
    before = trainer.evaluate(seed=seed)
    say(f"before: held-out greedy score {before['score']:.3f}, pass@{k} {before[f'pass@{k}']:.3f}; GRPO for {config.total_episodes} episodes")
    train_started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_started
    after = trainer.evaluate(seed=seed)
    results = {"model": str(model), "seed": seed, "device": str(trainer.device), "precision": trainer.precision.name, "episodes": trainer.episodes,
               "held_out_before": _summary(before, k), "held_out_after": _summary(after, k), "train_seconds": train_seconds,
               "episodes_per_second": trainer.episodes / train_seconds, "samples_before": before["samples"], "samples_after": after["samples"],
               "total_seconds": time.perf_counter() - started, "config": config.to_dict()}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    _plot(trainer.history, results, run_dir / "results.png", k)
    return results


def _summary(evaluation: dict, k: int) -> dict:
    return {"score": evaluation["score"], "score_mean": evaluation["score_mean"], f"pass@{k}": evaluation[f"pass@{k}"],
            "response_length": evaluation["response_length"], "kl": evaluation.get("kl", 0.0)}


def _plot(history: list[dict], results: dict, path: Path, k: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in history if "env/score" in row]
    evaluated = [(0, results["held_out_before"]["score"], results["held_out_before"][f"pass@{k}"])]
    evaluated += [(row["episodes"], row["eval/score"], row["eval/pass@k"]) for row in history if "eval/score" in row]
    episodes = [row["episodes"] for row in rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    axes[0].plot(episodes, [row["env/score"] for row in rows])
    axes[0].set_title("training reward (mean per batch)")
    axes[1].plot([e for e, _, _ in evaluated], [s for _, s, _ in evaluated], marker="o", label="greedy score")
    axes[1].plot([e for e, _, _ in evaluated], [p for _, _, p in evaluated], marker="o", label=f"pass@{k}")
    axes[1].set_ylim(0, 1.05)
    axes[1].legend()
    axes[1].set_title("held-out prompts")
    axes[2].plot(episodes, [row.get("env/kl", float("nan")) for row in rows], color="gray")
    axes[2].set_title("KL to the starting model (nats / response)")
    axes[3].plot(episodes, [row["env/response_length"] for row in rows], color="green")
    axes[3].set_title("response length (tokens)")
    for axis in axes:
        axis.set_xlabel("episodes")
    fig.suptitle(f"GRPO on {Path(results['model']).name}: instruction following (seed {results['seed']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
