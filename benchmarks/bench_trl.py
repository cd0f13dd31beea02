"""ppokit.lm's PPO side by side with trl==1.12.0 (trl.experimental.ppo, the last trl with PPO).

Both start from the same SFT policy and reward model (built once by ppokit's sort demo pipeline),
with the same prompts, rollout batch, minibatches, epochs, response length, KL coefficient and
learning rate, alternating libraries run by run in fresh processes, one torch thread each. Reported:
episodes per second of training (generation + scoring + update), and the gold reward and KL to the
SFT policy of each trained policy, measured by the same code on the same held-out prompts.

The second part runs both on an 87M-parameter GPT-2 (benchmarks/lm/gpt2_87m.py: policy, reward
model, and the value model and reference each makes from them) with the same settings and step
count, all cores each, and reports episodes/s, response tokens/s and peak RSS
(benchmarks/results/lm_trl_87m.md).

    python benchmarks/bench_trl.py            # what `make bench-lm` runs (creates .venv-trl first)
    python benchmarks/bench_trl.py --libraries trl --trl-option whiten_rewards=true --report lm_trl_whiten_rewards --parts sort
    python benchmarks/bench_trl.py --parts 87m
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--total-episodes", type=int, default=6400)
    parser.add_argument("--trl-python", default=str(HERE.parent / ".venv-trl" / "bin" / "python"))
    parser.add_argument("--work-dir", default="/tmp/ppokit-bench-trl")
    parser.add_argument("--libraries", nargs="+", choices=["ppokit", "trl"], default=["ppokit", "trl"])
    parser.add_argument("--ppokit-option", action="append", default=[], metavar="KEY=JSON", help="override an LMPPOConfig field")
    parser.add_argument("--trl-option", action="append", default=[], metavar="KEY=JSON", help="override a trl PPOConfig field")
    parser.add_argument("--report", default="lm_trl", help="file stem of the results under benchmarks/results/")
    parser.add_argument("--parts", nargs="+", choices=["sort", "87m"], default=["sort", "87m"])
    parser.add_argument("--seeds-87m", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes-87m", type=int, default=16, help="episodes of each 87M run (batches of 8)")
    args = parser.parse_args()
    if "sort" in args.parts:
        compare_on_sort(args)
    if "87m" in args.parts:
        compare_at_87m(args)


def run_library(library: str, settings: dict, out_dir: Path, args) -> dict:
    """One training run in a fresh process of the library's own venv; returns its timing.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "settings.json").write_text(json.dumps(settings, indent=1))
    python = args.trl_python if library == "trl" else sys.executable
    script = HERE / "lm" / ("run_trl.py" if library == "trl" else "run_ppokit.py")
    env = {**os.environ, "OMP_NUM_THREADS": str(settings["threads"]), "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run([python, str(script), str(out_dir / "settings.json"), str(out_dir / "timing.json")], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=open(out_dir / "stderr.log", "w"))
    return json.loads((out_dir / "timing.json").read_text())


def compare_on_sort(args) -> None:
    options = {"ppokit": parse_options(args.ppokit_option), "trl": parse_options(args.trl_option)}
    work = Path(args.work_dir)

    from ppokit.lm.demo import prepare_pipeline

    setup = prepare_pipeline("sort", work / "setup", seed=0, reward="model", progress=False, say=print)
    task = setup["task"]
    hyperparameters = {key: value for key, value in {**task.ppo, "total_episodes": args.total_episodes}.items()}
    hyperparameters.update({"temperature": 1.0, "missing_eos_penalty": 1.0, "adam_eps": 1e-5, "clip_range": 0.2, "clip_range_vf": 0.2,
                            "gamma": 1.0, "gae_lambda": 0.95, "max_grad_norm": 1.0})
    runs = []
    for seed in args.seeds:
        order = ["ppokit", "trl"] if seed % 2 == 0 else ["trl", "ppokit"]
        for library in [name for name in order if name in args.libraries]:
            out_dir = work / f"{library}-seed{seed}"
            settings = {"sft_dir": str(setup["sft_dir"]), "rm_dir": setup["ppo_values"]["reward_model"], "prompts": setup["ppo_values"]["prompts"],
                        "seed": seed, "threads": 1, "output_dir": str(out_dir / "policy"), "hyperparameters": hyperparameters,
                        f"{library}_options": options[library]}
            started = time.perf_counter()
            timing = run_library(library, settings, out_dir, args)
            quality = evaluate(out_dir / "policy", setup)
            runs.append({**timing, **quality, "library": library, "library_version": timing["library"], "seed": seed,
                         "process_seconds": time.perf_counter() - started})
            print(f"{library:7s} seed {seed}: {timing['episodes_per_second']:7.1f} episodes/s, gold {quality['gold']:.3f}, KL {quality['kl']:.3f}", flush=True)
    before = evaluate(setup["sft_dir"], setup)
    write_report(runs, before, hyperparameters, args)


def compare_at_87m(args) -> None:
    """ppokit and trl on the 87M GPT-2: same models, settings and step count; speed and peak RSS."""
    sys.path.insert(0, str(HERE / "lm"))
    import gpt2_87m

    work = Path(args.work_dir) / "87m"
    paths = gpt2_87m.build(work / "models")
    hyperparameters = {"batch_size": 8, "minibatch_size": 8, "n_epochs": 1, "total_episodes": args.episodes_87m, "max_new_tokens": 32,
                       "temperature": 1.0, "missing_eos_penalty": 1.0, "kl_coef": 0.05, "learning_rate": 1e-5, "adam_eps": 1e-5,
                       "clip_range": 0.2, "clip_range_vf": 0.2, "vf_coef": 0.1, "gamma": 1.0, "gae_lambda": 0.95, "max_grad_norm": 1.0}
    threads = os.cpu_count()
    runs = []
    for seed in args.seeds_87m:
        for library in ["ppokit", "trl"] if seed % 2 == 0 else ["trl", "ppokit"]:
            out_dir = work / f"{library}-seed{seed}"
            settings = {"sft_dir": paths["policy"], "rm_dir": paths["reward_model"], "prompts": paths["prompts"], "seed": seed, "threads": threads,
                        "output_dir": str(out_dir / "policy"), "hyperparameters": hyperparameters}
            timing = run_library(library, settings, out_dir, args)
            runs.append({**timing, "library": library, "seed": seed})
            print(f"87M {library:7s} seed {seed}: {timing['episodes_per_second']:.2f} episodes/s, {timing['tokens_per_second']:.1f} tokens/s, "
                  f"peak RSS {timing['peak_rss_mib']:,.0f} MiB", flush=True)
    write_87m_report(runs, hyperparameters, threads, gpt2_87m.parameter_count(paths["policy"]), args)


def write_87m_report(runs: list[dict], hyperparameters: dict, threads: int, parameters: int, args) -> None:
    median = lambda lib, key: statistics.median(r[key] for r in runs if r["library"] == lib)  # noqa: E731
    lines = [
        f"# ppokit.lm PPO vs trl 1.12.0 on a {parameters / 1e6:.1f}M-parameter GPT-2 (CPU)",
        "",
        f"Command: `python benchmarks/bench_trl.py --parts 87m --seeds-87m {' '.join(map(str, args.seeds_87m))} --episodes-87m {args.episodes_87m}` "
        f"(part of `make bench-lm`), {time.strftime('%Y-%m-%d')}, {threads}-core CPU, {threads} torch threads per run, runs alternating in fresh processes, "
        "float32.",
        "",
        f"Same models for both (benchmarks/lm/gpt2_87m.py: a GPT-2 of 12 x 768 with a 1,700-word vocabulary, {parameters:,} parameters, as the policy "
        "and its frozen reference; a reward model of the same size, which also initializes the value model), same prompts (32 tokens) and settings: "
        + ", ".join(f"{k}={v}" for k, v in sorted(hyperparameters.items())) + ".",
        "",
        "Response tokens: ppokit counts the tokens it generated; trl samples every response to its full length (32) and cuts at EOS afterwards, "
        "so its count is episodes x 32. These untrained 1,700-token models almost never sample EOS, so both generate 32 tokens per response. "
        "Peak RSS is the training process's, model loading included.",
        "",
        "| library | runs | episodes/s (median) | response tokens/s (median) | peak RSS MiB (median) |",
        "|---|---|---|---|---|",
    ]
    for library in ("ppokit", "trl"):
        lines.append(f"| {library} | {sum(r['library'] == library for r in runs)} | {median(library, 'episodes_per_second'):.2f} | "
                     f"{median(library, 'tokens_per_second'):.1f} | {median(library, 'peak_rss_mib'):,.0f} |")
    lines += ["", f"Ratios ppokit / trl: tokens/s **{median('ppokit', 'tokens_per_second') / median('trl', 'tokens_per_second'):.2f}x**, "
                  f"peak RSS **{median('ppokit', 'peak_rss_mib') / median('trl', 'peak_rss_mib'):.2f}x**.",
              "", "Per run:", "", "| library | seed | episodes/s | tokens/s | peak RSS MiB | train seconds |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['library']} | {r['seed']} | {r['episodes_per_second']:.2f} | {r['tokens_per_second']:.1f} | {r['peak_rss_mib']:,.0f} | "
              f"{r['train_seconds']:.1f} |" for r in runs]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lm_trl_87m.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "lm_trl_87m.json").write_text(json.dumps({"runs": runs, "hyperparameters": hyperparameters, "parameters": parameters}, indent=1) + "\n")
    print((RESULTS / "lm_trl_87m.md").read_text())


def parse_options(pairs: list[str]) -> dict:
    """KEY=VALUE pairs, each VALUE read as JSON when it parses (true, 0.1, "x") and as a string otherwise."""
    options = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def evaluate(policy_dir: Path, setup: dict) -> dict:
    """Gold reward, reward-model score and KL to the SFT policy on the held-out prompts (sampled at temperature 1)."""
    from ppokit.lm.config import LMPPOConfig
    from ppokit.lm.models import load_causal_lm, load_scalar_model, load_tokenizer
    from ppokit.lm.ppo import LMPPOTrainer
    from ppokit.lm.rewards import RewardModelReward

    tokenizer = load_tokenizer(policy_dir)
    values = setup["ppo_values"]
    config = LMPPOConfig.from_dict({**{k: values[k] for k in ("policy", "prompts", "max_new_tokens")}, "batch_size": 8, "minibatch_size": 8,
                                    "total_episodes": 8, "tensorboard": False})
    rm_dir = values["reward_model"]
    trainer = LMPPOTrainer(config, policy=load_causal_lm(policy_dir, tokenizer), tokenizer=tokenizer,
                           reference=load_causal_lm(setup["sft_dir"], tokenizer), value_model=load_scalar_model(rm_dir, tokenizer),
                           reward=RewardModelReward(load_scalar_model(rm_dir, tokenizer), tokenizer), prompts=setup["eval_prompts"],
                           progress=False, verbose=False)
    result = trainer.evaluate(setup["eval_prompts"], samples=1, gold_reward=setup["task"].gold_reward, seed=0)
    return {"gold": result["gold_mean"], "rm_score": result["score_mean"], "kl": result["kl"]}


def write_report(runs: list[dict], before: dict, hyperparameters: dict, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(exist_ok=True)
    median = lambda lib, key: statistics.median(r[key] for r in runs if r["library"] == lib)  # noqa: E731
    libraries = [name for name in ("ppokit", "trl") if name in args.libraries]
    command = f"python benchmarks/bench_trl.py --seeds {' '.join(map(str, args.seeds))} --total-episodes {args.total_episodes}"
    if libraries != ["ppokit", "trl"]:
        command += " --libraries " + " ".join(libraries)
    for library in ("ppokit", "trl"):
        command += "".join(f" --{library}-option {option}" for option in getattr(args, f"{library}_option"))
    if args.report != "lm_trl":
        command += f" --report {args.report}"
    lines = [
        "# ppokit.lm PPO vs trl 1.12.0 (trl.experimental.ppo), sort task",
        "",
        f"Command: `{command}`{' (`make bench-lm`)' if args.report == 'lm_trl' else ''}, {time.strftime('%Y-%m-%d')}, "
        "2-core CPU, one torch thread per run, runs alternating in fresh processes.",
        "",
        "Same SFT policy, reward model, prompts and hyperparameters for both: "
        + ", ".join(f"{k}={v}" for k, v in sorted(hyperparameters.items())) + ".",
        "",
        "Score scaling is each library's default: ppokit divides the reward-model score by its running standard deviation "
        "(`score_normalization: running`); trl 1.12.0 has no running normalization and uses the raw score "
        "(its `whiten_rewards=True` option, which whitens the per-token rewards instead, is run on the same set-up in "
        "`results/lm_trl_whiten_rewards.md`).",
        "",
        *([f"Options beyond these: ppokit {args.ppokit_option or 'none'}, trl {args.trl_option or 'none'}.", ""]
          if args.ppokit_option or args.trl_option else []),
        f"Before PPO (the SFT policy): gold {before['gold']:.3f}, reward-model score {before['rm_score']:.3f}.",
        "",
        "| library | seeds | episodes/s (median) | gold reward after (median) | RM score after | KL to SFT (nats/response) |",
        "|---|---|---|---|---|---|",
    ]
    for library in libraries:
        seeds = [r["seed"] for r in runs if r["library"] == library]
        lines.append(f"| {library} | {len(seeds)} | {median(library, 'episodes_per_second'):.1f} | {median(library, 'gold'):.3f} | "
                     f"{median(library, 'rm_score'):.3f} | {median(library, 'kl'):.3f} |")
    if libraries == ["ppokit", "trl"]:
        ratio = median("ppokit", "episodes_per_second") / median("trl", "episodes_per_second")
        lines += ["", f"Ratio of median episodes/s, ppokit / trl: **{ratio:.2f}x**."]
    lines += ["", "Per run:", "",
              "| library | seed | episodes/s | gold | RM score | KL |", "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['library']} | {r['seed']} | {r['episodes_per_second']:.1f} | {r['gold']:.3f} | {r['rm_score']:.3f} | {r['kl']:.3f} |")
    (RESULTS / f"{args.report}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{args.report}.json").write_text(json.dumps({"runs": runs, "before": before, "hyperparameters": hyperparameters,
                                                            "options": {"ppokit": args.ppokit_option, "trl": args.trl_option}}, indent=1) + "\n")

    fig, (speed, gold) = plt.subplots(1, 2, figsize=(9, 3.5))
    for axis, key, title in ((speed, "episodes_per_second", "episodes per second"), (gold, "gold", "gold reward after PPO")):
        for i, library in enumerate(libraries):
            values = [r[key] for r in runs if r["library"] == library]
            axis.bar(i, statistics.median(values), color={"ppokit": "#1f77b4", "trl": "#ff7f0e"}[library])
            axis.scatter([i] * len(values), values, color="black", s=12, zorder=3)
        axis.set_xticks(range(len(libraries)), [{"ppokit": "ppokit", "trl": "trl 1.12.0"}[name] for name in libraries])
        axis.set_title(title)
    gold.axhline(before["gold"], color="gray", linestyle="--", label="SFT policy")
    gold.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.report}.png", dpi=100)
    print((RESULTS / f"{args.report}.md").read_text())


if __name__ == "__main__":
    main()
