"""ppokit vs Stable-Baselines3, side by side: same env, hyperparameters (ppokit's preset), step budget, seeds.

Each run is a fresh process (benchmarks/run_one.py); the libraries alternate seed by seed so drifts
in machine speed hit both alike. Writes benchmarks/results/sb3_comparison.md and .png. Then, ppokit
alone: the time to solve CartPole-v1 with its preset over 5 seeds (results/time_to_solve.md) and runs
at CleanRL's script settings (results/cleanrl_settings.md).

    python benchmarks/bench_sb3.py [--seeds 0 1 2] [--envs CartPole-v1 Pendulum-v1]
                                   [--solve-seeds 0 1 2 3 4] [--cleanrl-envs ...] [--cleanrl-seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

from ppokit.gym.envs.make import has_numpy_vector_env

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SOLVE_ENV = "CartPole-v1"  # the time-to-solve figure: ppokit's own preset for this env


# CleanRL's own scripts, measured on this machine (issue figures): SPS while training at their defaults
CLEANRL_SETTINGS = [
    # (env, ppokit preset with CleanRL's settings, step budget, CleanRL's measured SPS and eval)
    ("CartPole-v1", "CartPole-v1-cleanrl", 500_000, (4_498, 500.0)),
    ("HalfCheetah-v5", "HalfCheetah-v5-cleanrl", 100_000, (1_148, 648.0)),
]


def run(lib: str, env: str, seed: int, raw: Path, preset: str | None = None, total_steps: int | None = None,
        extra: list[str] | None = None, name: str | None = None) -> dict:
    """One run of run_one.py in a fresh process; ``extra`` are more run_one.py arguments, ``name`` the raw file's stem."""
    out = raw / f"{name or preset or env}-{lib}-seed{seed}.json"
    command = [sys.executable, str(HERE / "run_one.py"), "--lib", lib, "--env", env, "--seed", str(seed), "--out", str(out)]
    command += (["--preset", preset] if preset else []) + (["--total-steps", str(total_steps)] if total_steps else [])
    command += extra or []
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec=",.0f"):
    return "-" if value is None else format(value, spec)


def write_table(results: dict, seeds: list[int], path: Path) -> None:
    lines = [
        "# ppokit vs Stable-Baselines3 (side by side)",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/bench_sb3.py`. Both libraries use ppokit's preset",
        "hyperparameters for the env, the same step budget, seeds " + ", ".join(map(str, seeds)) + ", one torch thread, a fresh",
        "process per run, alternating. 'ppokit' runs its defaults (numpy engine; for CartPole gymnasium's numpy-vectorized",
        "env, whose reset steps are not counted as steps); 'ppokit-sync' is ppokit on the same per-copy envs as SB3.",
        "Medians over seeds. SPS = env steps / training seconds. 'to threshold' = first",
        "moment the mean of the last 20 training episodes reaches it (CartPole 475, Pendulum -250); seconds counted from",
        "process start. Final eval = mean of 20 deterministic episodes with the same evaluation code for both.",
        "",
        "| env | library | SPS (median) | SPS ratio ppokit/SB3 | seconds to threshold | steps to threshold | final eval (median) | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for env, by_lib in results.items():
        sps = {lib: median([r["sps"] for r in runs]) for lib, runs in by_lib.items()}
        for lib, runs in by_lib.items():
            ratio = f"{sps[lib] / sps['sb3']:.2f}x" if lib.startswith("ppokit") and "sb3" in sps else ""
            reached = [r for r in runs if r["seconds_to_threshold"] is not None]
            lines.append(
                f"| {env} | {lib} | {fmt(sps[lib])} | {ratio} | {fmt(median([r['seconds_to_threshold'] for r in runs]), '.1f')} "
                f"({len(reached)}/{len(runs)} reached) | {fmt(median([r['steps_to_threshold'] for r in runs]))} | "
                f"{fmt(median([r['final_eval'] for r in runs]), '.1f')} | {fmt(median([r['peak_rss_mb'] for r in runs]))} |"
            )
    lines += ["", "Per run:", "", "| env | library | seed | SPS | seconds to threshold | final eval |", "|---|---|---|---|---|---|"]
    for env, by_lib in results.items():
        for lib, runs in by_lib.items():
            for r in runs:
                lines.append(f"| {env} | {lib} | {r['seed']} | {fmt(r['sps'])} | {fmt(r['seconds_to_threshold'], '.1f')} | {r['final_eval']:.1f} |")
    path.write_text("\n".join(lines) + "\n")


def write_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, (env, by_lib) in zip(axes[0], results.items()):
        for lib, runs in by_lib.items():
            budget = max(r["steps"] for r in runs)
            grid = np.linspace(0, budget, 200)
            curves = []
            for r in runs:
                if r["curve"]:
                    steps, _, means = zip(*r["curve"])
                    curves.append(np.interp(grid, steps, means, left=np.nan))
            if not curves:
                continue
            stacked = np.array(curves)
            with warnings.catch_warnings():  # before the first 20 episodes every run is NaN there
                warnings.simplefilter("ignore", RuntimeWarning)
                low, middle, high = np.nanmin(stacked, 0), np.nanmedian(stacked, 0), np.nanmax(stacked, 0)
            ax.plot(grid, middle, label=f"{lib} (median of {len(curves)})")
            ax.fill_between(grid, low, high, alpha=0.2)
        ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("mean return of last 20 training episodes")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--envs", nargs="*", default=["CartPole-v1", "Pendulum-v1"], help="envs of the side-by-side runs with SB3 (none: skip)")
    parser.add_argument("--cleanrl-envs", nargs="*", default=[env for env, *_ in CLEANRL_SETTINGS],
                        help="envs on which ppokit also runs at CleanRL's settings (none: skip)")
    parser.add_argument("--cleanrl-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="seeds of the runs at CleanRL's settings (HalfCheetah's return at 100k steps varies a lot by seed)")
    parser.add_argument("--solve-seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4],
                        help="seeds of ppokit's time-to-solve runs on its CartPole-v1 preset (side-by-side runs are reused; none: skip)")
    args = parser.parse_args()
    raw = RESULTS / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[dict]]] = {}
    for env in args.envs:
        # ppokit's default for CartPole is gymnasium's numpy-vectorized env; 'ppokit-sync' runs it on the
        # same per-copy env code as Stable-Baselines3, to separate the env's share of the speed-up.
        libs = ["ppokit", "sb3"] + (["ppokit-sync"] if has_numpy_vector_env(env) else [])
        results[env] = {lib: [] for lib in libs}
        for seed in args.seeds:
            for lib in (libs if seed % 2 == 0 else libs[::-1]):
                results[env][lib].append(run(lib, env, seed, raw))
    if results:
        write_table(results, args.seeds, RESULTS / "sb3_comparison.md")
        write_plot(results, RESULTS / "sb3_comparison.png")
        print((RESULTS / "sb3_comparison.md").read_text())
    if args.solve_seeds:
        done = {r["seed"]: r for r in results.get(SOLVE_ENV, {}).get("ppokit", [])}
        solve_runs = [done.get(seed) or run("ppokit", SOLVE_ENV, seed, raw) for seed in args.solve_seeds]
        write_solve_table(solve_runs, RESULTS / "time_to_solve.md")
        print((RESULTS / "time_to_solve.md").read_text())
    cleanrl = {(env, preset, steps, reference): [run("ppokit", env, seed, raw, preset, steps, ["--sampled-eval"]) for seed in args.cleanrl_seeds]
               for env, preset, steps, reference in CLEANRL_SETTINGS if env in args.cleanrl_envs}
    if cleanrl:
        write_cleanrl_table(cleanrl, RESULTS / "cleanrl_settings.md")
        print((RESULTS / "cleanrl_settings.md").read_text())


def write_solve_table(runs: list[dict], path: Path) -> None:
    seconds = [r["seconds_to_threshold"] for r in runs]
    reached = [s for s in seconds if s is not None]
    # a seed that never reached the threshold counts as infinitely slow, so it pushes the median up
    ordered = sorted(s if s is not None else float("inf") for s in seconds)
    lines = [
        "# Time to solve CartPole-v1 with ppokit's preset",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/bench_sb3.py`. ppokit's `{SOLVE_ENV}` preset, one fresh",
        "process per seed. Seconds from process start (imports included) until the mean of the last 20 training episodes",
        "reaches 475; final eval = mean of 20 deterministic episodes after the full step budget.",
        "",
        f"- Median seconds to 475 over {len(runs)} seeds: **{fmt(statistics.median(ordered), '.2f')}** ({len(reached)}/{len(runs)} reached)",
        f"- Median final eval: {fmt(median([r['final_eval'] for r in runs]), '.1f')}",
        "",
        "| seed | seconds to 475 | steps to 475 | SPS | final eval |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(f"| {r['seed']} | {fmt(r['seconds_to_threshold'], '.2f')} | {fmt(r['steps_to_threshold'])} | {fmt(r['sps'])} | {r['final_eval']:.1f} |")
    path.write_text("\n".join(lines) + "\n")


def write_cleanrl_table(results: dict, path: Path) -> None:
    lines = [
        "# ppokit at CleanRL's settings",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/bench_sb3.py`. ppokit runs the preset that copies",
        "CleanRL's script defaults (network, hyperparameters, normalization wrappers), one torch thread, a fresh process per",
        "seed. CleanRL's SPS is its own script measured on this machine with gymnasium 0.29.1 (its scripts log no returns",
        "under gymnasium 1.x), so it is a reference figure, not a side-by-side run. ppokit's evaluation: 20 episodes",
        "with the mean (most likely) action, and 20 sampling actions as CleanRL's own evaluation does. 'last 20' = mean",
        "return of the last 20 training episodes. Medians over seeds " + ", ".join(str(r["seed"]) for r in next(iter(results.values()))) + ".",
        "",
        "| env | preset | steps | ppokit SPS | CleanRL SPS | ratio | ppokit eval, deterministic | ppokit eval, sampled "
        "| ppokit last 20 | CleanRL eval |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (env, preset, steps, (reference_sps, reference_eval)), runs in results.items():
        sps = median([r["sps"] for r in runs])
        last_20 = median([r["curve"][-1][2] if r["curve"] else None for r in runs])
        lines.append(f"| {env} | `{preset}` | {steps:,} | {fmt(sps)} | {reference_sps:,} | {sps / reference_sps:.1f}x | "
                     f"{fmt(median([r['final_eval'] for r in runs]), '.1f')} | {fmt(median([r.get('final_eval_sampled') for r in runs]), '.1f')} | "
                     f"{fmt(last_20, '.1f')} | {reference_eval:.0f} |")
    lines += ["", "Per run:", "", "| env | seed | SPS | eval, deterministic | eval, sampled | last 20 |", "|---|---|---|---|---|---|"]
    for (env, *_), runs in results.items():
        for r in runs:
            lines.append(f"| {env} | {r['seed']} | {fmt(r['sps'])} | {fmt(r['final_eval'], '.1f')} | "
                         f"{fmt(r.get('final_eval_sampled'), '.1f')} | {fmt(r['curve'][-1][2] if r['curve'] else None, '.1f')} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
