"""Training steps per second on CartPole-v1 and Pendulum-v1 before and after a change of the code's layout, side by side in one run.

The code at a git revision (default 8822530, the last commit before the house was rebuilt: gym/ split into
envs/, policies/, engines/, policies from parts, one training-loop skeleton) against the working tree. Each run is
a fresh process training the env's preset (CartPole: the numpy engine; Pendulum: the numpy engine with observation
and reward normalization) for --steps env steps, one BLAS thread; the two sides alternate, seed by seed; steps per
second is the training loop's (learn(), env creation included, imports left out). Medians over the seeds go to
``results/house_sps.md``.

Usage: python benchmarks/bench_house.py [--before REV] [--seeds 0 1 2 3 4] [--steps 40000]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ENVS = ("CartPole-v1", "Pendulum-v1")


def one_run(env_id: str, seed: int, steps: int, out_path: str) -> None:
    """In a fresh process: train ENV_ID's preset for STEPS steps and write the loop's steps/s to OUT_PATH."""
    import ppokit
    from ppokit import PPO

    agent = PPO(env_id, {"seed": seed, "total_steps": steps, "tensorboard": False}, verbose=False, progress_bar=False)
    started = time.perf_counter()
    agent.learn()
    seconds = time.perf_counter() - started
    Path(out_path).write_text(json.dumps({"steps": agent.global_step, "seconds": seconds, "sps": agent.global_step / seconds,
                                          "ppokit": str(Path(ppokit.__file__).parent)}))


def measure(src: Path, env_id: str, seed: int, steps: int, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, __file__, "--one", env_id, str(seed), str(steps), str(out)], check=True, env=env)
    result = json.loads(out.read_text())
    if not result["ppokit"].startswith(str(src)):  # the side must run its own tree, not the installed one
        raise RuntimeError(f"{src}: the run imported ppokit from {result['ppokit']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="8822530", help="git revision from before the change")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=40_000, help="env steps per run")
    parser.add_argument("--one", nargs=4, metavar=("ENV", "SEED", "STEPS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one_run(args.one[0], int(args.one[1]), int(args.one[2]), args.one[3])
    work = Path(tempfile.mkdtemp(prefix="ppokit-house-"))
    before_tree = work / "before"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(before_tree), args.before], check=True, capture_output=True)
    sides = [(f"before ({args.before})", before_tree / "src"), ("after", REPO / "src")]
    results = {env_id: {label: [] for label, _ in sides} for env_id in ENVS}
    try:
        for env_id in ENVS:
            for seed in args.seeds:
                for label, src in (sides if seed % 2 == 0 else sides[::-1]):
                    run = measure(src, env_id, seed, args.steps, work / f"{env_id}-{label.split()[0]}-{seed}.json")
                    results[env_id][label].append(run["sps"])
                    print(f"{env_id} seed {seed} {label}: {run['sps']:.0f} steps/s", flush=True)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before_tree)], check=False)
    write_report(results, args)


def write_report(results: dict, args) -> None:
    lines = ["# Steps per second before and after the house was rebuilt", "",
             f"`python benchmarks/bench_house.py --before {args.before} --steps {args.steps}`: seeds {', '.join(map(str, args.seeds))}, "
             f"each env's preset, {args.steps:,} steps per run, fresh processes, sides alternating, one BLAS thread, CPU.", "",
             "| env | code | steps/s per seed | median | after / before |", "|---|---|---|---|---|"]
    for env_id, sides in results.items():
        (_, before), (_, after) = sides.items()
        ratio = statistics.median(after) / statistics.median(before)
        for index, (label, values) in enumerate(sides.items()):
            lines.append(f"| {env_id} | {label} | {', '.join(f'{v:.0f}' for v in values)} | {statistics.median(values):.0f} | "
                         f"{f'{ratio:.3f}x' if index == 1 else ''} |")
    out = REPO / "benchmarks" / "results" / "house_sps.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
