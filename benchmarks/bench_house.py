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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from revisions import REPO, revision_tree, run_sides, write_comparison

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
    with revision_tree(args.before, work / "before") as before_src:
        sides = [(f"before ({args.before})", before_src), ("after", REPO / "src")]

        def steps_per_second(env_id: str, seed: int, side: tuple) -> float:
            label, src = side
            return measure(src, env_id, seed, args.steps, work / f"{env_id}-{label.split()[0]}-{seed}.json")["sps"]

        results = run_sides(dict.fromkeys(ENVS, sides), args.seeds, steps_per_second, "steps/s")
    write_comparison(REPO / "benchmarks" / "results" / "house_sps.md", "Steps per second before and after the house was rebuilt",
                     f"python benchmarks/bench_house.py --before {args.before} --steps {args.steps}", args.seeds,
                     f"each env's preset, {args.steps:,} steps per run, fresh processes, sides alternating, one BLAS thread, CPU",
                     ("env", "code", "steps/s"), results, (".0f", ".3f"))


if __name__ == "__main__":
    main()
