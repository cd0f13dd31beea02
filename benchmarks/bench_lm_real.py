"""ppokit side by side with TRL on a real pretrained chat model (SmolLM2-135M-Instruct) and a verifiable reward.

The same model, training and held-out prompts (ppokit.lm.instruction_task: a format instruction a program checks),
reward, samples per prompt, batch, minibatch, max new tokens, learning rate, KL coefficient, epochs and seeds, each
run in a fresh process of its library's own venv, libraries alternating seed by seed:
- ppokit `advantage_estimator: grpo` against TRL's current GRPOTrainer (the newest trl, .venv-trl-grpo);
- ppokit `gae` (PPO with a value model) against trl 1.12.0's PPO (the last trl with PPO, .venv-trl).
Reported: episodes/s and generated tokens/s of training, the split of its time (generation / scoring / update),
peak RSS, the training reward per update, and the held-out greedy score and pass@k of each trained policy, scored by
the same code (benchmarks/lm/evaluate_real.py). Writes benchmarks/results/lm_real.md and lm_real.png, and every
run's figures under benchmarks/results/raw/lm_real/.

    python benchmarks/bench_lm_real.py                      # what `make bench-lm-real` runs
    python benchmarks/bench_lm_real.py --pairs grpo --seeds 0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
RAW = RESULTS / "raw" / "lm_real"
MODEL = REPO / "models" / "smollm2-135m-instruct"

SHARED = {"samples_per_prompt": 4, "batch_size": 32, "minibatch_size": 16, "n_epochs": 1, "max_new_tokens": 32, "temperature": 1.0,
          "learning_rate": 2e-5, "adam_eps": 1e-5, "max_grad_norm": 1.0, "clip_range": 0.2, "missing_eos_penalty": None}
PAIRS = {
    # GRPO: no KL (TRL's default beta 0), one epoch, 8 updates of 8 prompts x 4 samples
    "grpo": {"runs": {"ppokit": "run_ppokit_real.py", "trl": "run_trl_grpo.py"}, "venv": ".venv-trl-grpo",
             "hyperparameters": {**SHARED, "kl_coef": 0.0, "total_episodes": 256}},
    # PPO with a value model: one response per prompt, 2 epochs, a KL penalty in the reward, 8 updates of 16
    "gae": {"runs": {"ppokit": "run_ppokit_real.py", "trl": "run_trl_ppo_real.py"}, "venv": ".venv-trl",
            "hyperparameters": {**SHARED, "samples_per_prompt": 1, "batch_size": 16, "minibatch_size": 8, "n_epochs": 2, "kl_coef": 0.05,
                                "total_episodes": 128, "clip_range_vf": 0.2, "vf_coef": 0.1, "gamma": 1.0, "gae_lambda": 0.95}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=["grpo", "gae"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-samples", type=int, default=4)
    parser.add_argument("--report", default="lm_real")
    args = parser.parse_args()
    subprocess.run([sys.executable, str(HERE / "lm" / "real_model.py"), str(MODEL)], check=True)
    prompts, held_out = write_prompts(RAW)
    base = {"model": str(MODEL), "prompts": str(prompts), "eval_prompts": str(held_out), "reward": "ppokit.lm.instruction_task:instruction_reward",
            "reward_path": str(REPO / "src"), "threads": args.threads, "eval_samples": args.eval_samples}
    before = evaluate(str(MODEL), base | {"hyperparameters": SHARED}, RAW / "base")
    runs = []
    for pair in args.pairs:
        for seed in args.seeds:
            libraries = ["ppokit", "trl"] if seed % 2 == 0 else ["trl", "ppokit"]
            for library in libraries:
                runs.append(run(pair, library, seed, base, args))
                print(f"{pair} seed {seed} {library}: {runs[-1]['episodes_per_second']:.2f} episodes/s, held-out greedy "
                      f"{runs[-1]['held_out']['score']:.3f}", flush=True)
    (RAW / "runs.json").write_text(json.dumps({"before": before, "runs": runs}, indent=1))
    write_report(before, runs, args)


def write_prompts(folder: Path) -> tuple[Path, Path]:
    from ppokit.lm.instruction_task import make_prompts

    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "prompts.jsonl", folder / "held_out.jsonl"
    for path, rows in zip(paths, (make_prompts(512, seed=1), make_prompts(32, seed=7, held_out=True))):
        path.write_text("".join(json.dumps({"messages": messages}) + "\n" for messages in rows))
    return paths


def run(pair: str, library: str, seed: int, base: dict, args) -> dict:
    """One training run in a fresh process of the library's venv, then the held-out evaluation of what it saved."""
    folder = RAW / pair / f"{library}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    settings = base | {"seed": seed, "estimator": pair, "hyperparameters": PAIRS[pair]["hyperparameters"], "output_dir": str(folder / "policy")}
    (folder / "settings.json").write_text(json.dumps(settings, indent=1))
    python = str(REPO / PAIRS[pair]["venv"] / "bin" / "python") if library == "trl" else sys.executable
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO / "src") if library == "ppokit" else ""}
    with open(folder / "stderr.log", "w") as log:
        subprocess.run([python, str(HERE / "lm" / PAIRS[pair]["runs"][library]), str(folder / "settings.json"), str(folder / "timing.json")],
                       check=True, env=env, stdout=log, stderr=log)
    result = json.loads((folder / "timing.json").read_text()) | {"pair": pair, "library_name": library, "seed": seed}
    result["held_out"] = evaluate(str(folder / "policy"), settings, folder)
    return result


def evaluate(model: str, settings: dict, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval-settings.json").write_text(json.dumps(settings, indent=1))
    subprocess.run([sys.executable, str(HERE / "lm" / "evaluate_real.py"), model, str(folder / "eval-settings.json"), str(folder / "held_out.json")],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": str(settings["threads"]), "HF_HUB_OFFLINE": "1"}, stderr=subprocess.DEVNULL)
    return json.loads((folder / "held_out.json").read_text())


def write_report(before: dict, runs: list[dict], args) -> None:
    k = args.eval_samples
    lines = ["# ppokit and TRL on SmolLM2-135M-Instruct (instruction following)", "",
             f"Held-out prompts before training: greedy score {before['score']:.3f}, pass@{k} {before[f'pass@{k}']:.3f}. "
             f"Medians over seeds {', '.join(map(str, args.seeds))}; {args.threads} torch threads, float32, CPU.", "",
             f"| estimator | library | episodes/s | generated tokens/s | generate / score / update (s) | peak RSS (MiB) | final training reward | "
             f"held-out greedy score | held-out pass@{k} |", "|---|---|---|---|---|---|---|---|---|"]
    for pair in args.pairs:
        for library in ("ppokit", "trl"):
            chosen = [r for r in runs if r["pair"] == pair and r["library_name"] == library]
            if not chosen:
                continue
            median = {key: statistics.median(r[key] for r in chosen) for key in ("episodes_per_second", "tokens_per_second", "time_generate",
                                                                                  "time_score", "time_update", "peak_rss_mib")}
            held = {key: statistics.median(r["held_out"][key] for r in chosen) for key in ("score", f"pass@{k}")}
            lines.append(f"| {pair} | {chosen[0]['library']} | {median['episodes_per_second']:.2f} | {median['tokens_per_second']:.1f} | "
                         f"{median['time_generate']:.0f} / {median['time_score']:.0f} / {median['time_update']:.0f} | {median['peak_rss_mib']:,.0f} | "
                         f"{statistics.median(r['reward_curve'][-1] for r in chosen):.3f} | {held['score']:.3f} | {held[f'pass@{k}']:.3f} |")
    ratios = []
    for pair in args.pairs:
        per_seed = [next(r for r in runs if r["pair"] == pair and r["seed"] == s and r["library_name"] == "ppokit")["episodes_per_second"] /
                    next(r for r in runs if r["pair"] == pair and r["seed"] == s and r["library_name"] == "trl")["episodes_per_second"] for s in args.seeds]
        ratios.append(f"{pair}: ppokit / trl episodes/s {statistics.median(per_seed):.2f}x (per seed: {', '.join(f'{x:.2f}' for x in per_seed)})")
    lines += ["", *ratios, ""]
    (RESULTS / f"{args.report}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    plot(before, runs, args)


def plot(before: dict, runs: list[dict], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.pairs) + 1, figsize=(5 * (len(args.pairs) + 1), 4))
    colors = {"ppokit": "#1f77b4", "trl": "#ff7f0e"}
    for axis, pair in zip(axes, args.pairs):
        for r in (r for r in runs if r["pair"] == pair):
            batch = PAIRS[pair]["hyperparameters"]["batch_size"]
            axis.plot([batch * (i + 1) for i in range(len(r["reward_curve"]))], r["reward_curve"], color=colors[r["library_name"]], alpha=0.7,
                      label=f"{r['library']}" if r["seed"] == args.seeds[0] else None)
        axis.set_title(f"{pair}: training reward")
        axis.set_xlabel("episodes")
        axis.legend()
    labels, values = ["base"], [before["score"]]
    for pair in args.pairs:
        for library in ("ppokit", "trl"):
            chosen = [r["held_out"]["score"] for r in runs if r["pair"] == pair and r["library_name"] == library]
            if chosen:
                labels.append(f"{pair}\n{library}")
                values.append(statistics.median(chosen))
    axes[-1].bar(labels, values, color=["#999999"] + [colors[label.split()[-1]] for label in labels[1:]])
    axes[-1].set_title("held-out greedy score (median)")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.report}.png", dpi=100)


if __name__ == "__main__":
    main()
