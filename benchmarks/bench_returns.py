"""Returns at full budgets: every shipped preset, 5 seeds, against the published PPO figures.

    python benchmarks/bench_returns.py                    # all presets, seeds 0-4, 2 worker processes
    python benchmarks/bench_returns.py --presets Hopper-v5 --seeds 0 1
    python benchmarks/bench_returns.py --report-only      # redraw the table and plots from the raw files

Each (preset, seed) trains in a fresh process at the preset's own total_steps and is then evaluated
deterministically for 20 episodes. A finished run's JSON in results/raw/returns/ is kept, so an
interrupted benchmark picks up where it stopped (--rerun trains again). Writes results/returns.md and
one learning-curve PNG per preset in results/returns/ (median over seeds with a min-max band, the
published figures as dashed lines). It takes hours on 2 cores: run it in the background.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
RAW = HERE / "results" / "raw" / "returns"
PLOTS = HERE / "results" / "returns"
REPORT = HERE / "results" / "returns.md"
EVAL_EPISODES = 20
CURVE_WINDOW = 20  # the curve is the mean of the last (up to) 20 training episodes, sampled after each update

# Cheapest first, so a partial run already covers most presets.
PRESET_ORDER = [
    "CartPole-v1", "Pendulum-v1", "MountainCarContinuous-v0", "FrozenLake-v1", "CartPole-v1-cleanrl", "Acrobot-v1",
    "LunarLander-v3", "LunarLander-v3-continuous", "InvertedDoublePendulum-v5", "Hopper-v5", "Ant-v5",
    "HalfCheetah-v5-cleanrl", "HalfCheetah-v5", "Walker2d-v5", "BipedalWalker-v3",
]

# 10M Atari steps are out of reach on 2 cores: benchmarks/bench_atari.py measures them at 1M frames against SB3
ATARI_PRESETS = ("Atari", "ALE-Breakout-v5")

ZOO = "rl-baselines3-zoo PPO (benchmark.md)"
CLEANRL = "CleanRL (docs/rl-algorithms/ppo.md and rpo.md, commit fe8d8a0)"
# preset -> [(source, what the figure was measured on, steps, mean return)]. The zoo's figures are one
# trained agent each, evaluated deterministically; CleanRL's are the mean over 3 seeds (10 for rpo.md's
# PPO column) of the training episodic return at the end of the run. Looked up 2026-11.
PUBLISHED: dict[str, list[tuple[str, str, int, float]]] = {
    "CartPole-v1": [(ZOO, "CartPole-v1", 100_000, 500.0)],
    "CartPole-v1-cleanrl": [(CLEANRL, "CartPole-v1", 500_000, 490.04)],
    "Acrobot-v1": [(ZOO, "Acrobot-v1", 1_000_000, -73.5), (CLEANRL, "Acrobot-v1, ppo.py settings", 500_000, -86.36)],
    "LunarLander-v3": [(ZOO, "LunarLander-v2", 1_000_000, 242.1)],
    "LunarLander-v3-continuous": [(ZOO, "LunarLanderContinuous-v2", 1_000_000, 270.9)],
    "Pendulum-v1": [(ZOO, "Pendulum-v1, with gSDE", 100_000, -172.2)],
    "FrozenLake-v1": [],  # no published PPO figure; see bench_frozenlake.py for Stable-Baselines3 side by side
    "MountainCarContinuous-v0": [(ZOO, "MountainCarContinuous-v0, with gSDE", 20_000, 88.3)],
    "HalfCheetah-v5": [(ZOO, "HalfCheetah-v3", 1_000_000, 5819.1), (CLEANRL, "HalfCheetah-v4, its own settings", 1_000_000, 1442.64)],
    "HalfCheetah-v5-cleanrl": [(CLEANRL, "HalfCheetah-v4", 1_000_000, 1442.64)],
    "Hopper-v5": [(ZOO, "Hopper-v3", 1_000_000, 2410.4), (CLEANRL, "Hopper-v4, the same settings", 1_000_000, 2382.86)],
    "Walker2d-v5": [(ZOO, "Walker2d-v3", 1_000_000, 3478.8), (CLEANRL, "Walker2d-v4, its own settings", 1_000_000, 2287.95)],
    "Ant-v5": [(ZOO, "Ant-v3", 1_000_000, 1327.2), (CLEANRL, "Ant-v4, its own settings (rpo.md)", 8_000_000, 1824.17)],
    "InvertedDoublePendulum-v5": [(CLEANRL, "InvertedDoublePendulum-v4, its own settings (rpo.md)", 8_000_000, 5626.22)],
    "BipedalWalker-v3": [(ZOO, "BipedalWalker-v3", 5_000_000, 213.3), (CLEANRL, "BipedalWalker-v3, its own settings (rpo.md)", 8_000_000, 172.12)],
}


def train_one(preset: str, seed: int, out: Path) -> None:
    """Train one seed of a preset, evaluate it, write its JSON (atomically: a killed run leaves nothing)."""
    import numpy as np

    from ppokit import PPO
    from ppokit.gym.evaluate import evaluate_policy
    from ppokit.gym.presets import load_preset

    env_id, values = load_preset(preset)
    run_dir = tempfile.mkdtemp(prefix=f"ppokit-returns-{preset}-seed{seed}-")  # logs and checkpoints are not kept
    agent = PPO(env_id, {"seed": seed, "tensorboard": False, "checkpoint_interval": 0}, preset=preset,
                run_dir=run_dir, verbose=False, progress_bar=False)
    recent: deque[float] = deque(maxlen=CURVE_WINDOW)
    curve: list[tuple[int, float]] = []

    def on_update(metrics):
        recent.extend(episode_return for episode_return, _length in agent.logger.last_episodes)
        if recent:  # from the first finished episode (MountainCarContinuous has only 20 in its whole budget)
            curve.append((int(metrics["global_step"]), float(np.mean(recent))))

    started = time.perf_counter()
    agent.learn(callback=on_update)
    seconds = time.perf_counter() - started
    returns = evaluate_policy(agent, episodes=EVAL_EPISODES, deterministic=True)
    result = {
        "preset": preset, "env_id": env_id, "env_kwargs": values.get("env_kwargs", {}), "seed": seed,
        "steps": agent.global_step, "train_seconds": seconds, "sps": agent.global_step / seconds,
        "eval_returns": returns, "eval_mean": float(np.mean(returns)),
        "last_training_mean": curve[-1][1] if curve else None, "curve": curve,
    }
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(result))
    partial.replace(out)
    shutil.rmtree(run_dir, ignore_errors=True)


def raw_path(preset: str, seed: int) -> Path:
    return RAW / f"{preset}-seed{seed}.json"


def run_all(presets: list[str], seeds: list[int], workers: int, rerun: bool) -> None:
    RAW.mkdir(parents=True, exist_ok=True)
    jobs = [(p, s) for p in presets for s in seeds if rerun or not raw_path(p, s).exists()]
    print(f"{len(jobs)} runs to do ({len(presets)} presets x {len(seeds)} seeds, finished ones kept)", flush=True)
    env = os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def launch(job):
        preset, seed = job
        if not rerun and raw_path(preset, seed).exists():  # finished meanwhile by another instance
            return
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--one", preset, str(seed)], env=env, capture_output=True, text=True)
        minutes = (time.perf_counter() - started) / 60
        if done.returncode != 0:
            print(f"FAILED {preset} seed {seed} after {minutes:.1f} min:\n{done.stderr[-2000:]}", flush=True)
        else:
            result = json.loads(raw_path(preset, seed).read_text())
            print(f"{preset} seed {seed}: eval {result['eval_mean']:.1f}, {result['sps']:,.0f} SPS, {minutes:.1f} min", flush=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(launch, jobs))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if abs(value) < 10_000 else f"{value:,.0f}"


def load_results(presets: list[str], seeds: list[int]) -> dict[str, list[dict]]:
    results = {}
    for preset in presets:
        runs = [json.loads(raw_path(preset, s).read_text()) for s in seeds if raw_path(preset, s).exists()]
        if runs:
            results[preset] = runs
    return results


def plot_preset(preset: str, runs: list[dict]) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    curves = [np.array(r["curve"]) for r in runs if len(r["curve"]) >= 2]
    if not curves:
        return None
    # each seed's curve starts at its first finished episode: interpolate onto the steps all seeds cover
    start, end = max(c[0, 0] for c in curves), min(c[-1, 0] for c in curves)
    grid = np.linspace(start, end, 200)
    values = np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in curves])
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    ax.fill_between(grid, values.min(axis=0), values.max(axis=0), alpha=0.25, label=f"min-max over {len(curves)} seeds")
    ax.plot(grid, np.median(values, axis=0), label="ppokit, median")
    for source, env_id, _steps, figure in PUBLISHED.get(preset, []):
        ax.axhline(figure, linestyle="--", color="black" if source == ZOO else "tab:red", label=f"{source.split(' (')[0]}: {figure:g} ({env_id})")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"mean return of the last (up to) {CURVE_WINDOW} training episodes")
    ax.set_title(f"{preset} ({runs[0]['env_id']})")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / f"{preset}.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(presets: list[str], seeds: list[int]) -> None:
    results = load_results(presets, seeds)
    lines = [
        "# Returns at full budgets",
        "",
        f"`python benchmarks/bench_returns.py` (make bench-returns): each shipped preset at its own total_steps, seeds "
        f"{', '.join(map(str, seeds))}, then a deterministic evaluation of {EVAL_EPISODES} episodes. Published figures "
        "beside each: rl-baselines3-zoo's benchmark.md (one agent, deterministic evaluation, often an older env version) "
        "and CleanRL's docs. Curves: results/returns/PRESET.png.",
        "",
        "| preset | env | steps | eval per seed | median | published | median vs published | median SPS | median minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for preset in presets:
        runs = results.get(preset)
        if not runs:
            lines.append(f"| {preset} | | | not run yet | | | | | |")
            continue
        evals = [r["eval_mean"] for r in runs]
        median = statistics.median(evals)
        published = PUBLISHED.get(preset, [])
        figures = "<br>".join(f"{figure:g} ({'zoo' if source == ZOO else 'CleanRL'}, {env_id}, {_steps_label(steps)})"
                              for source, env_id, steps, figure in published) or "none"
        comparison = "<br>".join(_versus(median, figure) for _source, _env, _s, figure in published) or "-"
        env_label = runs[0]["env_id"] + (f" {runs[0]['env_kwargs']}" if runs[0]["env_kwargs"] else "")
        seeds_done = "" if len(runs) == len(seeds) else f" ({len(runs)} of {len(seeds)} seeds)"
        lines.append(
            f"| {preset} | {env_label} | {runs[0]['steps']:,} | {', '.join(_fmt(e) for e in evals)}{seeds_done} | **{_fmt(median)}** | "
            f"{figures} | {comparison} | {statistics.median(r['sps'] for r in runs):,.0f} | {statistics.median(r['train_seconds'] for r in runs) / 60:.1f} |"
        )
        plot_preset(preset, runs)
    REPORT.write_text("\n".join(lines) + "\n")
    print(f"wrote {REPORT.relative_to(HERE.parent)} and {PLOTS.relative_to(HERE.parent)}/*.png")


def _steps_label(steps: int) -> str:
    return f"{steps / 1e6:g}M steps" if steps >= 1_000_000 else f"{steps // 1000}k steps"


def _versus(median: float, figure: float) -> str:
    """'at or above', or the shortfall as an amount and a share of the figure's distance from zero."""
    if median >= figure:
        return f"at or above (+{_fmt(median - figure)})"
    return f"short by {_fmt(figure - median)} ({(figure - median) / abs(figure):.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=PRESET_ORDER, help="presets to run (default: all shipped, cheapest first)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2, help="runs trained at once, one process each")
    parser.add_argument("--rerun", action="store_true", help="train again even where a result file exists")
    parser.add_argument("--report-only", action="store_true", help="only rewrite returns.md and the plots from the raw files")
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        train_one(args.one[0], int(args.one[1]), raw_path(args.one[0], int(args.one[1])))
        return
    from ppokit.gym.presets import list_presets

    unknown = sorted(set(args.presets) - set(list_presets()))
    if unknown:
        parser.error(f"unknown presets {unknown}; shipped: {sorted(list_presets())}")
    missing = sorted(set(list_presets()) - set(PRESET_ORDER) - set(ATARI_PRESETS))
    if missing and args.presets == PRESET_ORDER:  # a preset added without a place here still gets measured, last
        args.presets = list(args.presets) + [p for p in missing if p not in args.presets]
    if not args.report_only:
        run_all(args.presets, args.seeds, args.workers, args.rerun)
    write_report(args.presets, args.seeds)


if __name__ == "__main__":
    main()
