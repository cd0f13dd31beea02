"""Defaults side by side: ppokit's PPOConfig defaults against Stable-Baselines3's and CleanRL's, with no preset.

    python benchmarks/bench_defaults.py [--seeds 0 1 2] [--envs FrozenLake-v1 ...] [--jobs 2]

For each env (toy text and classic control) and seed, each in a fresh process:
- ppokit's defaults: `ppokit train ENV --no-preset --total-steps N` (8 envs x 256 steps, 64 per minibatch, 10 epochs);
- Stable-Baselines3 2.9.2's defaults: `PPO("MlpPolicy", env)` (1 env x 2048 steps, otherwise the same numbers);
- CleanRL ppo.py's defaults as ppokit keys (4 envs x 128 steps, 4 minibatches, 4 epochs, lr 2.5e-4 annealed,
  entropy 0.01, value clipping; the CartPole-v1-cleanrl preset's keys).
Every model gets the same evaluation: 30 episodes, deterministic actions, env seeds 10000-10029.
Runs go `--jobs` at a time (returns, not timings, are compared). Writes results/defaults.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
EVAL_EPISODES = 30
# budgets a new user would try; MountainCar and Pendulum are not solved from anyone's defaults at these budgets
BUDGETS = {"FrozenLake-v1": 100_000, "CliffWalking-v1": 100_000, "Taxi-v4": 200_000, "CartPole-v1": 100_000,
           "Acrobot-v1": 100_000, "MountainCar-v0": 100_000, "Pendulum-v1": 100_000}
RUNNERS = ("ppokit", "sb3", "cleanrl")
CLEANRL_KEYS = {"n_envs": 4, "n_steps": 128, "n_epochs": 4, "minibatch_size": 128, "learning_rate": 2.5e-4, "lr_schedule": "linear",
                "clip_range_vf": 0.2, "ent_coef": 0.01, "vf_coef": 0.25, "max_grad_norm": 0.5}


def mean_return(env_id: str, act) -> float:
    import gymnasium as gym
    import numpy as np

    from ppokit.gym.envs.make import with_step_limit
    from ppokit.gym.evaluate import EVAL_STEP_LIMIT

    env = with_step_limit(gym.make(env_id), EVAL_STEP_LIMIT)  # CliffWalking-v1 has no time limit: a looping policy ends there
    returns = []
    for i in range(EVAL_EPISODES):
        obs, info = env.reset(seed=10_000 + i)
        total, done = 0.0, False
        while not done:
            action = np.asarray(act(obs, info))
            action = int(action.reshape(-1)[0]) if isinstance(env.action_space, gym.spaces.Discrete) else action.reshape(env.action_space.shape)
            obs, reward, terminated, truncated, info = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return statistics.mean(returns)


def run_one(runner: str, env_id: str, seed: int, total_steps: int) -> float:
    import numpy as np

    if runner == "sb3":
        import gymnasium as gym
        import torch
        from stable_baselines3 import PPO as SB3PPO

        torch.set_num_threads(1)
        model = SB3PPO("MlpPolicy", gym.make(env_id), seed=seed, device="cpu", verbose=0)
        model.learn(total_steps)
        return mean_return(env_id, lambda obs, info: model.predict(obs, deterministic=True)[0])
    from ppokit import PPO

    keys = {"total_steps": total_steps, "seed": seed, "tensorboard": False} | (CLEANRL_KEYS if runner == "cleanrl" else {})
    agent = PPO(env_id, keys, preset=None, verbose=False, progress_bar=False)
    agent.learn()
    # ppokit trains Taxi under the action mask its info gives (action_masks: auto) and acts under it, as its own evaluation does
    masked = getattr(getattr(agent, "collector", None), "mask_reader", None) is not None
    return mean_return(env_id, lambda obs, info: agent.predict(np.asarray(obs), deterministic=True,
                                                               action_mask=info.get("action_mask") if masked else None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--envs", nargs="*", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--one", nargs=3, metavar=("RUNNER", "ENV", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        runner, env_id, seed = args.one
        print(json.dumps(run_one(runner, env_id, int(seed), BUDGETS[env_id])))
        return
    env = os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

    def launch(job: tuple[str, str, int]) -> tuple[tuple[str, str, int], float]:
        runner, env_id, seed = job
        done = subprocess.run([sys.executable, __file__, "--one", runner, env_id, str(seed)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{runner} {env_id} seed {seed} failed:\n{done.stderr[-2000:]}")
        value = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{env_id} {runner} seed {seed}: {value:.2f}", flush=True)
        return job, value

    # the slow SB3 runs first, so that the pool ends together
    jobs = [(runner, env_id, seed) for runner in ("sb3", "ppokit", "cleanrl") for env_id in args.envs for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        scores = dict(pool.map(launch, jobs))
    labels = {"ppokit": "ppokit defaults", "sb3": "SB3 2.9.2 defaults", "cleanrl": "CleanRL defaults"}
    lines = ["# Defaults side by side, no preset", "",
             f"`python benchmarks/bench_defaults.py --seeds {' '.join(map(str, args.seeds))}`: mean return of {EVAL_EPISODES} deterministic "
             "episodes per model (env seeds 10000-10029); per seed, then the median over seeds. ppokit's defaults: 8 envs x 256 steps, "
             "minibatches of 64, 10 epochs, lr 3e-4. SB3's: `PPO(\"MlpPolicy\", env)`, 1 env x 2048 steps, the same update numbers. "
             "CleanRL's: 4 envs x 128 steps, 4 minibatches, 4 epochs, lr 2.5e-4 annealed, entropy 0.01, value clipping (run as ppokit keys).",
             "", "| env | steps | " + " | ".join(labels[r] for r in RUNNERS) + " |", "|---|---|" + "---|" * len(RUNNERS)]
    for env_id in args.envs:
        cells = []
        for runner in RUNNERS:
            values = [scores[(runner, env_id, seed)] for seed in args.seeds]
            cells.append(f"{', '.join(f'{v:.2f}' for v in values)} (**{statistics.median(values):.2f}**)")
        lines.append(f"| {env_id} | {BUDGETS[env_id]:,} | " + " | ".join(cells) + " |")
    out = HERE / "results" / "defaults.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
