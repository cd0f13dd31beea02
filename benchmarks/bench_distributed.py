"""Data parallel on this machine: steps per second against the number of processes (1, 2), side by side.

Each workload trains with the same global hyperparameters at 1 and 2 processes (``torchrun
--nproc_per_node=2 -m ppokit train ...``; the 2-process run steps n_envs / 2 envs per process and
takes half of every minibatch), alternating the order, over seeds. SPS is the run's own
``charts/SPS`` (env steps over training seconds, from progress.csv); the return is the mean of the
deterministic evaluation episodes the CLI runs at the end. CartPole's zoo preset is also trained by
Stable-Baselines3 in one process (benchmarks/run_one.py), for the ratio the issue asks about.

The bound: what 2 processes could reach if their exchanges cost nothing. Two independent one-process
runs, started together, each with one rank's share (n_envs / 2 envs, minibatch_size / 2, half the
steps; language models: half the rollout, the minibatch and the episodes) and nothing to exchange.
Their summed SPS over the 1-process SPS is the most any data-parallel scheme that splits the envs
(language models: the prompts) this way can get on these cores.

    python benchmarks/bench_distributed.py [--seeds 0 1 2] [--workloads CartPole-v1 Pendulum-v1 HalfCheetah-v5 ALE/Breakout-v5 lm-sort]

Writes benchmarks/results/distributed.md (distributed-partial.md when --workloads leaves some out) and the raw
runs under benchmarks/results/raw/distributed/.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_sb3 import RESULTS, fmt, run

RAW = RESULTS / "raw" / "distributed"
# (env id, overrides applied at every process count). HalfCheetah's preset has one env: two here, so that two processes can split them.
WORKLOADS = {
    "CartPole-v1": ("CartPole-v1", []),
    "Pendulum-v1": ("Pendulum-v1", []),
    "HalfCheetah-v5": ("HalfCheetah-v5", ["n_envs=2", "total_steps=20480"]),
    # a CNN: each minibatch step costs far more than one exchange of its gradient
    "ALE/Breakout-v5": ("ALE/Breakout-v5", ["total_steps=8192", "eval_episodes=2"]),
}
LM_WORKLOAD = "lm-sort"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "ppokit"]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", f"--master_port={free_port()}", "-m", "ppokit"]


def train(workload: str, processes: int, seed: int) -> dict:
    """One run; returns its SPS, wall seconds and evaluation return."""
    env_id, overrides = WORKLOADS[workload]
    run_dir = RAW / f"{workload.replace('/', '-')}-{processes}proc-seed{seed}"
    if (run_dir / "result.json").exists():  # finished before: kept (delete the folder to measure again)
        return json.loads((run_dir / "result.json").read_text())
    command = launcher(processes) + ["train", env_id, "--run-dir", str(run_dir), "--seed", str(seed), "--no-progress", "--quiet",
                                     "tensorboard=false", *overrides]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    with open(run_dir / "progress.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    evaluation = json.loads((run_dir / "eval.json").read_text())
    result = {"sps": float(last["charts/SPS"]), "steps": int(last["global_step"]), "wall_s": wall, "return": evaluation["mean_return"]}
    (run_dir / "result.json").write_text(json.dumps(result))
    print(f"{workload:16s} {processes} proc seed {seed}: {result['sps']:,.0f} SPS, return {result['return']:.1f}, {wall:.1f} s wall", flush=True)
    return result


def one_rank_share(workload: str) -> list[str]:
    """The arguments after ``ppokit`` that give one process one rank's share of a 2-process run: half the
    envs, the minibatch and the steps (language models: half the rollout, the minibatch and the episodes)."""
    if workload == LM_WORKLOAD:
        import yaml

        config = lm_config()
        values = yaml.safe_load(config.read_text())
        return ["lm", "ppo", "--config", str(config), *(f"{key}={values[key] // 2}" for key in ("batch_size", "minibatch_size", "total_episodes"))]
    from ppokit.gym.presets import load_preset, preset_for_env

    env_id, overrides = WORKLOADS[workload]
    _, values = load_preset(preset_for_env(env_id))
    values = values | {key: int(value) for key, value in (item.split("=", 1) for item in overrides)}
    return ["train", env_id, "eval_episodes=1", *overrides, *(f"{key}={values[key] // 2}" for key in ("n_envs", "minibatch_size", "total_steps"))]


def train_halves(workload: str, seed: int) -> dict:
    """The no-exchange bound: two one-process runs of one rank's share each, at the same time; their summed SPS."""
    run_dir = RAW / f"{workload.replace('/', '-')}-halves-seed{seed}"
    if (run_dir / "result.json").exists():
        return json.loads((run_dir / "result.json").read_text())
    runs = []
    for half in (0, 1):
        command = [sys.executable, "-m", "ppokit", *one_rank_share(workload), "--run-dir", str(run_dir / f"half{half}"), "--seed",
                   str(seed + 1000 * half), "--no-progress", "--quiet", "tensorboard=false"]
        runs.append(subprocess.Popen(command, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL))
    if any(run.wait() for run in runs):
        raise SystemExit(f"{workload}: a half run failed")
    speeds = [speed(run_dir / f"half{half}", workload) for half in (0, 1)]
    result = {"sps": sum(speeds), "half_sps": speeds}
    (run_dir / "result.json").write_text(json.dumps(result))
    print(f"{workload:16s} 2 halves seed {seed}: {result['sps']:,.2f} per second together (no exchange)", flush=True)
    return result


def speed(run_dir: Path, workload: str) -> float:
    """A run's env steps per training second (language models: episodes per second)."""
    with open(run_dir / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if workload == LM_WORKLOAD:
        return float(rows[-1]["episodes"]) / float(rows[-1]["time_elapsed"])
    return float(rows[-1]["charts/SPS"])


def lm_config() -> Path:
    """The sort task's PPO stage (SFT policy, reward model, prompts), built once by ppokit's demo pipeline."""
    import yaml

    from ppokit.lm.demo import prepare_pipeline

    path = RAW / "lm-setup" / "ppo.yaml"
    if not path.exists():
        setup = prepare_pipeline("sort", RAW / "lm-setup", seed=0, reward="model", progress=False, say=print)
        path.write_text(yaml.safe_dump(setup["ppo_values"], sort_keys=False))
    return path


def train_lm(processes: int, seed: int) -> dict:
    """LM PPO on the sort task: episodes per second of the PPO stage, and its final reward-model score."""
    run_dir = RAW / f"{LM_WORKLOAD}-{processes}proc-seed{seed}"
    if (run_dir / "result.json").exists():
        return json.loads((run_dir / "result.json").read_text())
    command = launcher(processes) + ["lm", "ppo", "--config", str(lm_config()), "--run-dir", str(run_dir), "--seed", str(seed),
                                     "--no-progress", "--quiet", "tensorboard=false"]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    with open(run_dir / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    last = rows[-10:]  # the reward model's mean score over the last 10 updates (a single batch is noisy)
    result = {"sps": speed(run_dir, LM_WORKLOAD), "steps": int(float(rows[-1]["episodes"])), "wall_s": wall,
              "return": statistics.fmean(float(r["env/score"]) for r in last)}
    (run_dir / "result.json").write_text(json.dumps(result))
    print(f"{LM_WORKLOAD:16s} {processes} proc seed {seed}: {result['sps']:,.2f} episodes/s, score {result['return']:.3f}, {wall:.1f} s wall", flush=True)
    return result


def median(values):
    return statistics.median(values) if values else None


def write_table(results: dict, sb3: list[float], seeds: list[int], path: Path) -> None:
    lines = [
        "# Data parallel: 1 and 2 processes on this machine",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/bench_distributed.py`, seeds {', '.join(map(str, seeds))}, on",
        f"{os.cpu_count()} cores, gloo. Same global hyperparameters at both counts (the preset; HalfCheetah with n_envs=2 and",
        "20,480 steps; Breakout 8,192 steps, 2 evaluation games; LM: the sort demo's PPO stage, 6,400 episodes). Medians over seeds.",
        "SPS: env steps (LM: episodes) per training second; return: mean of the deterministic evaluation episodes at the end",
        "(LM: the reward model's mean score over the last 10 updates). A run already in raw/ is reused: delete it to measure again.",
        "Bound: two one-process runs of one rank's share each (half the envs, minibatch and steps), started together, with",
        "nothing to exchange: their summed SPS, the most 2 processes splitting the envs (LM: the prompts) can reach on these cores.",
        "",
        "| workload | SPS, 1 process | SPS, 2 processes | 2 / 1 | bound: 2 halves, no exchange | bound / 1 | return, 1 process | return, 2 processes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload, by_count in results.items():
        one, two = (median([r["sps"] for r in by_count[p]]) for p in (1, 2))
        bound = median([r["sps"] for r in by_count.get("halves", [])])
        r1, r2 = (median([r["return"] for r in by_count[p]]) for p in (1, 2))
        spec = ",.2f" if workload == LM_WORKLOAD else ",.0f"
        bound_ratio = f"{bound / one:.2f}x" if bound else "-"
        lines.append(f"| {workload} | {fmt(one, spec)} | {fmt(two, spec)} | {two / one:.2f}x | {fmt(bound, spec)} | {bound_ratio} | "
                     f"{fmt(r1, ',.2f')} | {fmt(r2, ',.2f')} |")
    if sb3 and "CartPole-v1" in results:
        two = median([r["sps"] for r in results["CartPole-v1"][2]])
        one = median([r["sps"] for r in results["CartPole-v1"][1]])
        bound = median([r["sps"] for r in results["CartPole-v1"].get("halves", [])])
        lines += ["", f"CartPole-v1 zoo preset, Stable-Baselines3 in one process: {fmt(median(sb3))} SPS (seeds {', '.join(map(str, seeds))}).",
                  f"ppokit / SB3: {one / median(sb3):.2f}x with 1 process, {two / median(sb3):.2f}x with 2 processes"
                  + (f", {bound / median(sb3):.2f}x for the no-exchange bound." if bound else ".")]
    lines += ["", "Raw runs: `benchmarks/results/raw/distributed/`."]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workloads", nargs="+", default=[*WORKLOADS, LM_WORKLOAD], choices=[*WORKLOADS, LM_WORKLOAD])
    parser.add_argument("--no-sb3", action="store_true", help="skip the Stable-Baselines3 CartPole runs")
    args = parser.parse_args()
    RAW.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[int, list[dict]]] = {}
    for workload in args.workloads:
        results[workload] = {1: [], 2: []}
        for i, seed in enumerate(args.seeds):
            for processes in ((1, 2) if i % 2 == 0 else (2, 1)):  # alternate, so drift in the machine's speed hits both
                one = train_lm(processes, seed) if workload == LM_WORKLOAD else train(workload, processes, seed)
                results[workload][processes].append(one)
            results[workload].setdefault("halves", []).append(train_halves(workload, seed))
    sb3 = []
    if "CartPole-v1" in args.workloads and not args.no_sb3:
        sb3 = [run("sb3", "CartPole-v1", seed, RAW, extra=["--no-eval"], name="CartPole-v1-sb3")["sps"] for seed in args.seeds]
    # the committed table and summary hold every workload: a run of some of them goes to a file of its own
    complete = set(args.workloads) == {*WORKLOADS, LM_WORKLOAD}
    (RAW / ("summary.json" if complete else "summary-partial.json")).write_text(json.dumps({"results": results, "sb3_cartpole_sps": sb3}, indent=1))
    table = RESULTS / ("distributed.md" if complete else "distributed-partial.md")
    write_table(results, sb3, args.seeds, table)
    print(table.read_text())


if __name__ == "__main__":
    main()
