"""ppokit tune, shown: tune FrozenLake-v1 from the defaults (no preset) for a fixed budget, then train the found config
on 3 fresh seeds against the defaults, side by side.

    python benchmarks/bench_tune.py [--trials 40] [--n-jobs 2] [--total-steps 100000] [--seeds 100 101 102] [--trial-seeds 3]

1. `ppokit tune FrozenLake-v1 --no-preset --trials N --total-steps 100000 --evaluations 5 --eval-episodes 100 --seeds 3
   --n-jobs 2 --sampler-seed 0` into results/raw/tune-frozenlake/ (the study continues if it is there).
2. The best config (best.yaml) and PPOConfig's defaults, each on seeds the study never used, a fresh process per run:
   the greedy policy's exact success probability (computed from the env's transition table, no evaluation noise)
   and its success rate over 100 deterministic episodes (env seeds 10000-10099), as bench_frozenlake.py measures them.
Writes results/tune_frozenlake.md.
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

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
ENV_ID = "FrozenLake-v1"
STUDY_DIR = HERE / "results" / "raw" / "tune-frozenlake"


def run_one(config_file: str | None, seed: int, total_steps: int) -> tuple[float, float]:
    import numpy as np
    from bench_frozenlake import exact_success, success_rate

    from ppokit import PPO
    from ppokit.config import load_yaml

    keys = (load_yaml(config_file) if config_file else {}) | {"total_steps": total_steps, "seed": seed, "tensorboard": False}
    agent = PPO(ENV_ID, keys, preset=None, verbose=False, progress_bar=False)
    agent.learn()
    act = lambda obs: agent.predict(np.array([obs]), deterministic=True)[0]  # noqa: E731
    return success_rate(act), exact_success([int(act(state)) for state in range(16)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--total-steps", type=int, default=100_000)
    parser.add_argument("--seeds", nargs="*", type=int, default=[100, 101, 102])
    parser.add_argument("--trial-seeds", type=int, default=3, help="runs per trial (seeds 0..S-1): one seed lets the search fit its noise")
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(None if args.one[0] == "-" else args.one[0], int(args.one[1]), args.total_steps)))
        return
    env = os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    tune = [sys.executable, "-m", "ppokit", "tune", ENV_ID, "--no-preset", "--trials", str(args.trials), "--total-steps", str(args.total_steps),
            "--evaluations", "5", "--eval-episodes", "100", "--seeds", str(args.trial_seeds), "--n-jobs", str(args.n_jobs), "--sampler-seed", "0",
            "--study-dir", str(STUDY_DIR)]
    started = time.perf_counter()
    subprocess.run(tune, env=env, check=True)
    tuning_seconds = time.perf_counter() - started
    best = STUDY_DIR / "best.yaml"
    runs = {"tuned": str(best), "defaults": "-"}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    exact: dict[str, list[float]] = {name: [] for name in runs}
    for seed in args.seeds:
        for name in (runs if seed % 2 == 0 else list(runs)[::-1]):
            done = subprocess.run([sys.executable, __file__, "--one", runs[name], str(seed), "--total-steps", str(args.total_steps)],
                                  env=env, capture_output=True, text=True, check=True)
            rate, probability = json.loads(done.stdout.strip().splitlines()[-1])
            rates[name].append(rate)
            exact[name].append(probability)
            print(f"{name} seed {seed}: {rate:.2f} ({probability:.3f} exactly)", flush=True)
    trials = (STUDY_DIR / "trials.csv").read_text().count("\n") - 1
    tuned_keys = {k: v for k, v in yaml.safe_load(best.read_text()).items() if k != "total_steps"}
    lines = [f"# ppokit tune on {ENV_ID}: the found config against the defaults", "",
             f"`python benchmarks/bench_tune.py --trials {args.trials} --n-jobs {args.n_jobs}`: `ppokit tune {ENV_ID} --no-preset` with the default "
             f"search space, {trials} trials of {args.trial_seeds} runs of {args.total_steps:,} steps (seeds 0-{args.trial_seeds - 1}; "
             "5 evaluations of 100 deterministic episodes each, median pruner), "
             f"{args.n_jobs} worker processes, {tuning_seconds / 60:.0f} minutes on the 2-core machine. Then each config trains "
             f"{args.total_steps:,} steps on seeds {', '.join(map(str, args.seeds))} (never used by the study), a fresh process per run.", "",
             "| config | exact success probability per seed | median | success rate, 100 episodes, per seed | median |", "|---|---|---|---|---|"]
    labels = {"tuned": "found by `ppokit tune` (`best.yaml`)", "defaults": "PPOConfig's defaults (`--no-preset`)"}
    for name in runs:
        lines.append(f"| {labels[name]} | {', '.join(f'{v:.3f}' for v in exact[name])} | **{statistics.median(exact[name]):.3f}** | "
                     f"{', '.join(f'{v:.2f}' for v in rates[name])} | {statistics.median(rates[name]):.2f} |")
    lines += ["", "The found keys (those that differ from the defaults): " + ", ".join(f"`{k}: {v}`" for k, v in tuned_keys.items()) + ".",
              "The exact success probability is the greedy policy's chance of reaching the goal within the 100-step limit (0.740 is the "
              "best any stationary policy reaches)."]
    (HERE / "results" / "tune_frozenlake.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
