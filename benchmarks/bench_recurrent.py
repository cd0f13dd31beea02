"""Recurrent policies side by side on CartPole without velocities (ppokit/CartPoleNoVelocity-v1): only memory recovers them.

    python benchmarks/bench_recurrent.py [--seeds 0 1 2] [--total-steps 200000]

Runs, each a fresh process, runners alternating per seed:
- ppokit on its defaults with an LSTM: `ppokit train ppokit/CartPoleNoVelocity-v1 --no-preset policy=lstm`;
- sb3-contrib on its defaults: `RecurrentPPO("MlpLstmPolicy", env)` (1 env, 128 steps per update);
- ppokit's preset for the env (rl-baselines3-zoo's RecurrentPPO settings, its own 100k-step budget).
Every model gets the same evaluation: 30 episodes, deterministic actions, the memory carried through
each episode, env seeds 10000-10029. Writes results/recurrent-STEPS.md; each run's result is kept in
results/raw/recurrent/ (a second call adds the missing runs).
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
ENV_ID = "ppokit/CartPoleNoVelocity-v1"
EVAL_EPISODES = 30
RUNNERS = ("ppokit-defaults", "sb3-contrib", "ppokit-preset")
RAW = HERE / "results" / "raw" / "recurrent"


def mean_return(act_with_memory) -> float:
    """``act_with_memory(obs, memory, episode_start) -> (action, memory)``, run one episode at a time."""
    import gymnasium as gym

    from ppokit.gym.envs.toy_envs import register_toy_envs

    register_toy_envs()
    env = gym.make(ENV_ID)
    returns = []
    for i in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=10_000 + i)
        memory, start, total, done = None, True, 0.0, False
        while not done:
            action, memory = act_with_memory(obs, memory, start)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total, start, done = total + reward, False, terminated or truncated
        returns.append(total)
    return statistics.mean(returns)


def run_one(runner: str, seed: int, total_steps: int) -> dict:
    import numpy as np

    started = time.perf_counter()
    if runner.startswith("ppokit"):
        from ppokit import PPO

        if runner == "ppokit-preset":
            agent = PPO(ENV_ID, {"seed": seed, "tensorboard": False}, verbose=False, progress_bar=False)
        else:
            agent = PPO(ENV_ID, {"policy": "lstm", "total_steps": total_steps, "seed": seed, "tensorboard": False}, preset=None,
                        verbose=False, progress_bar=False)
        agent.learn()
        steps = agent.config.total_steps

        def act(obs, memory, start):
            action, memory = agent.predict(obs, state=memory, episode_start=np.array([start]), deterministic=True)
            return action, memory
    else:
        import gymnasium as gym
        import torch
        from sb3_contrib import RecurrentPPO

        from ppokit.gym.envs.toy_envs import register_toy_envs

        register_toy_envs()
        torch.set_num_threads(1)
        model = RecurrentPPO("MlpLstmPolicy", gym.make(ENV_ID), seed=seed, device="cpu", verbose=0)
        model.learn(total_steps)
        steps = total_steps

        def act(obs, memory, start):
            return model.predict(obs, state=memory, episode_start=np.array([start]), deterministic=True)
    seconds = time.perf_counter() - started
    return {"return": mean_return(act), "seconds": seconds, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--total-steps", type=int, default=200_000)
    parser.add_argument("--runners", nargs="*", default=list(RUNNERS), choices=RUNNERS)
    parser.add_argument("--one", nargs=2, metavar=("RUNNER", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.total_steps)))
        return
    env = os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    results: dict[str, list[dict]] = {runner: [] for runner in args.runners}
    RAW.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        order = args.runners if seed % 2 == 0 else args.runners[::-1]
        for runner in order:
            saved = RAW / f"{runner}-seed{seed}-{args.total_steps}.json"  # finished runs are kept: a second call only adds the missing ones
            if not saved.is_file():
                done = subprocess.run([sys.executable, __file__, "--one", runner, str(seed), "--total-steps", str(args.total_steps)],
                                      env=env, capture_output=True, text=True, check=True)
                saved.write_text(done.stdout.strip().splitlines()[-1] + "\n")
            result = json.loads(saved.read_text())
            results[runner].append(result)
            print(f"{runner} seed {seed}: return {result['return']:.1f} in {result['seconds']:.0f} s", flush=True)
    labels = {
        "ppokit-defaults": f"ppokit defaults, `--no-preset policy=lstm`, {args.total_steps:,} steps",
        "sb3-contrib": f'sb3-contrib 2.9.2 defaults, `RecurrentPPO("MlpLstmPolicy", env)`, 1 env, {args.total_steps:,} steps',
        "ppokit-preset": "ppokit preset (rl-baselines3-zoo's RecurrentPPO settings), 100,000 steps",
    }
    lines = [f"# Recurrent policies on {ENV_ID} (CartPole without its two velocities)", "",
             f"`python benchmarks/bench_recurrent.py --seeds {' '.join(map(str, args.seeds))} --total-steps {args.total_steps}`: "
             f"mean return of {EVAL_EPISODES} deterministic episodes per model (env seeds 10000-10029, memory carried "
             "through each episode; 500 is the most an episode can score, a random policy scores about 22). Each run a fresh process, "
             "one torch thread, runners alternating.", "",
             "| run | return per seed | median | training seconds per seed (median) |", "|---|---|---|---|"]
    for runner in args.runners:
        values = [r["return"] for r in results[runner]]
        seconds = [r["seconds"] for r in results[runner]]
        lines.append(f"| {labels[runner]} | {', '.join(f'{v:.1f}' for v in values)} | **{statistics.median(values):.1f}** | "
                     f"{', '.join(f'{s:.0f}' for s in seconds)} ({statistics.median(seconds):.0f}) |")
    out = HERE / "results" / f"recurrent-{args.total_steps}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
