"""`ppokit lm demo TASK`: the whole RLHF pipeline offline on a built-in task with a gold reward.

base model (built from a config, saved, loaded back) -> SFT on imperfect demonstrations -> response
pairs sampled from the SFT policy and labelled by the gold reward -> reward model -> PPO against the
learned reward -> gold reward, reward-model score and KL before and after, in results.json and a plot.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch

from ppokit.lm.config import LMPPOConfig, RewardModelConfig, SFTConfig
from ppokit.lm.data import write_jsonl
from ppokit.lm.device import resolve_device
from ppokit.lm.generation import GenerationSettings, generate
from ppokit.lm.models import build_tiny_causal_lm, load_causal_lm, load_tokenizer, save_pretrained
from ppokit.lm.ppo import LMPPOTrainer
from ppokit.lm.precision import Precision
from ppokit.lm.reward_model import RewardModelTrainer
from ppokit.lm.rewards import FunctionReward
from ppokit.lm.sft import SFTTrainer
from ppokit.lm.tasks import get_task


def run_demo(task_name: str, run_dir: str | Path, seed: int = 0, reward: str = "model", overrides: dict | None = None,
             progress: bool | None = None, verbose: bool = True) -> dict:
    """Run the pipeline; ``reward`` is 'model' (learned reward model) or 'function' (the gold rule itself).

    ``overrides``: {'sft': {...}, 'reward_model': {...}, 'ppo': {...}} config values over the task's.
    """
    say = print if verbose else (lambda *a, **k: None)
    started = time.perf_counter()
    stages = prepare_pipeline(task_name, run_dir, seed, reward, overrides, progress, say)
    task, run_dir, overrides = stages["task"], Path(run_dir), overrides or {}

    # PPO against the learned reward (or the gold rule); the gold reward is only watched
    t0 = time.perf_counter()
    ppo_config = LMPPOConfig.from_dict({**stages["ppo_values"], **overrides.get("ppo", {})})
    reward_source = None if reward == "model" else FunctionReward(task.gold_reward, name=f"{task.name}_gold_reward")
    trainer = LMPPOTrainer(ppo_config, run_dir / "ppo", reward=reward_source, gold_reward=task.gold_reward, progress=progress, verbose=False)
    before = trainer.evaluate(stages["eval_prompts"], samples=1, gold_reward=task.gold_reward, seed=seed)
    say(f"[3/3] PPO for {ppo_config.total_episodes} episodes on {trainer.device} ({trainer.precision.name}); "
        f"before: gold {before['gold_mean']:.3f}, score {before['score_mean']:.3f}")
    trainer.train()
    after = trainer.evaluate(stages["eval_prompts"], samples=1, gold_reward=task.gold_reward, seed=seed)
    timings = {**stages["timings"], "ppo_seconds": time.perf_counter() - t0}

    learned = reward == "model"
    results = {
        "task": task.name, "reward": reward, "seed": seed,
        "gold_before": before["gold_mean"], "gold_after": after["gold_mean"], "gold_greedy_before": before["gold"], "gold_greedy_after": after["gold"],
        "rm_before": before["score_mean"] if learned else None, "rm_after": after["score_mean"] if learned else None,
        "kl_before": before["kl"], "kl": after["kl"],
        "eos_fraction_after": after["eos_fraction"],
        "sft_eval_loss": stages["sft_result"]["eval_loss"],
        "rm_eval_accuracy": stages["rm_result"]["eval_accuracy"] if stages["rm_result"] else None,
        "eval_prompts": len(stages["eval_prompts"]), "ppo_episodes": trainer.episodes,
        "samples_before": before["samples"], "samples_after": after["samples"],
        **timings, "total_seconds": time.perf_counter() - started,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    _plot(trainer.history, results, run_dir / "results.png")
    say(f"gold reward {results['gold_before']:.3f} -> {results['gold_after']:.3f}; KL to the SFT policy {results['kl']:.3f} nats; "
        f"{results['total_seconds']:.0f} s; {run_dir / 'results.json'}")
    return results


def prepare_pipeline(task_name: str, run_dir: str | Path, seed: int = 0, reward: str = "model", overrides: dict | None = None,
                     progress: bool | None = None, say=print) -> dict:
    """Everything before PPO: the base model, SFT, and (for reward 'model') labelled pairs and the reward model.

    Returns the task, the folders, the PPO config values (policy, prompts, reward model) and the
    held-out evaluation prompts; the benchmark against other libraries starts PPO from here too.
    """
    task = get_task(task_name)
    if reward not in ("model", "function"):
        raise ValueError(f"reward must be 'model' or 'function', got {reward!r}")
    overrides = overrides or {}
    run_dir = Path(run_dir)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    timings: dict[str, float] = {}

    # a tiny base model, saved and loaded back through the path any user model takes
    base_dir = save_pretrained(build_tiny_causal_lm(task.build_tokenizer(), seed=seed, **task.model), task.build_tokenizer(), run_dir / "base")
    tokenizer = load_tokenizer(base_dir)

    # SFT on imperfect demonstrations
    t0 = time.perf_counter()
    prompts = [task.sample_prompt(rng) for _ in range(task.sizes["sft_rows"])]
    sft_data = write_jsonl(run_dir / "data" / "sft.jsonl", ({"prompt": p, "completion": task.demonstration(p, rng)} for p in prompts))
    sft_config = SFTConfig.from_dict({"model": str(base_dir), "data": str(sft_data), "seed": seed, **task.sft, **overrides.get("sft", {})})
    say(f"[1/3] SFT on {len(prompts)} imperfect demonstrations")
    sft_result = SFTTrainer(sft_config, run_dir / "sft", progress=progress, verbose=False).train()
    sft_dir = run_dir / "sft" / "model"
    timings["sft_seconds"] = time.perf_counter() - t0

    # preference pairs from the SFT policy, ranked by the gold reward; the reward model
    rm_result = None
    if reward == "model":
        t0 = time.perf_counter()
        device = resolve_device(sft_config.device)  # sampling the pairs runs where SFT ran
        precision = Precision.resolve(sft_config.precision, device)
        policy = load_causal_lm(sft_dir, tokenizer, precision.weights_dtype).to(device)
        pair_prompts = [task.sample_prompt(rng) for _ in range(task.sizes["preference_prompts"])]
        with precision.autocast():
            pairs = _labelled_pairs(policy, tokenizer, pair_prompts, task, max_new_tokens=task.ppo["max_new_tokens"])
        rm_data = write_jsonl(run_dir / "data" / "preferences.jsonl", pairs)
        rm_config = RewardModelConfig.from_dict({"model": str(sft_dir), "data": str(rm_data), "seed": seed, **task.reward_model,
                                                 **overrides.get("reward_model", {})})
        say(f"[2/3] reward model on {len(pairs)} pairs sampled from the SFT policy and ranked by the gold reward")
        rm_result = RewardModelTrainer(rm_config, run_dir / "reward_model", progress=progress, verbose=False).train()
        say(f"      held-out pairwise accuracy {rm_result['eval_accuracy']:.3f}")
        timings["reward_model_seconds"] = time.perf_counter() - t0

    ppo_prompts = [task.sample_prompt(rng) for _ in range(task.sizes["ppo_prompts"])]
    eval_rng = random.Random(seed + 10_000)
    eval_prompts = [task.sample_prompt(eval_rng) for _ in range(task.sizes["eval_prompts"])]
    prompt_data = write_jsonl(run_dir / "data" / "prompts.jsonl", ({"prompt": p} for p in ppo_prompts))
    ppo_values = {"policy": str(sft_dir), "prompts": str(prompt_data), "seed": seed, **task.ppo}
    if reward == "model":
        ppo_values["reward_model"] = str(run_dir / "reward_model" / "model")
    return {"task": task, "sft_dir": sft_dir, "ppo_values": ppo_values, "eval_prompts": eval_prompts,
            "sft_result": sft_result, "rm_result": rm_result, "timings": timings}


@torch.no_grad()
def _labelled_pairs(policy, tokenizer, prompts: list[str], task, max_new_tokens: int, samples_per_prompt: int = 4,
                    batch_size: int = 256) -> list[dict]:
    """K responses per prompt, ranked by the gold reward, and every pair of them with different gold
    rewards (the higher one 'chosen'): a rater ranking K answers at once, as in InstructGPT."""
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    pairs = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        samples = [generate(policy, tokenizer, chunk, settings) for _ in range(samples_per_prompt)]
        for row, prompt in enumerate(chunk):
            # dict.fromkeys, not a set: a set of strings iterates in a per-process hash order, which would
            # reorder tied responses and so the pairs and the reward model from run to run
            distinct = dict.fromkeys(s[row] for s in samples)
            ranked = sorted(distinct, key=lambda response: -task.gold_reward(prompt, response))
            for i, better in enumerate(ranked):
                for worse in ranked[i + 1 :]:
                    if task.gold_reward(prompt, better) > task.gold_reward(prompt, worse):
                        pairs.append({"prompt": prompt, "chosen": better, "rejected": worse})
    return pairs


def _plot(history: list[dict], results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curve, bars) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [2, 1]})
    history = [row for row in history if "env/score" in row]  # (not a held-out evaluation's row alone)
    episodes = [row["episodes"] for row in history]
    curve.plot(episodes, [row.get("env/gold", float("nan")) for row in history], label="gold reward")
    curve.plot(episodes, [row["env/score"] for row in history], label="reward used by PPO")
    curve.set_xlabel("episodes")
    curve.set_ylabel("mean per batch")
    kl_axis = curve.twinx()
    kl_axis.plot(episodes, [row.get("env/kl", float("nan")) for row in history], color="gray", linestyle="--", label="KL to reference")
    kl_axis.set_ylabel("KL (nats per response)")
    lines = curve.get_lines() + kl_axis.get_lines()
    curve.legend(lines, [line.get_label() for line in lines], loc="lower right")
    curve.set_title(f"PPO on '{results['task']}'")
    labels, values = ["gold before", "gold after"], [results["gold_before"], results["gold_after"]]
    if results.get("rm_before") is not None:
        labels += ["RM before", "RM after"]
        values += [results["rm_before"], results["rm_after"]]
    bars.bar(labels, values, color=["#999999", "#1f77b4", "#bbbbbb", "#ff7f0e"][: len(values)])
    bars.set_title(f"held-out prompts (KL after: {results['kl']:.2f})")
    bars.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
