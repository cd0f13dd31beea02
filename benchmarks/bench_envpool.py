"""ppokit's SPS with env_backend envpool vs gymnasium, alternating seed by seed, one epoch per update
so that the env's share of the time is large. Needs envpool 0.8.4 with numpy<2 (its own venv):

    python -m venv .venv-envpool && .venv-envpool/bin/pip install -c constraints.txt -e ".[envpool]"
    .venv-envpool/bin/python benchmarks/bench_envpool.py [CartPole-v1 Pendulum-v1 HalfCheetah-v4]
"""

import statistics
import sys
import time
import warnings

import numpy as np

from ppokit import PPO
from ppokit.gym.envs.envpool_backend import EnvpoolVectorEnv

SETTINGS = {"CartPole-v1": dict(n_envs=8, n_steps=32, total_steps=50_000), "Pendulum-v1": dict(n_envs=4, n_steps=1024, total_steps=50_000),
            "HalfCheetah-v4": dict(n_envs=1, n_steps=2048, total_steps=20_480)}


def main(env_ids: list[str]) -> None:
    warnings.filterwarnings("ignore")
    obs, _ = EnvpoolVectorEnv("CartPole-v1", 4, seed=0).reset(seed=0)
    if len({tuple(row) for row in np.round(obs, 6)}) != 4:  # the numpy-2 failure: all copies alike
        sys.exit(f"envpool returned identical observations for 4 copies: {obs}")
    print("| env | envs x steps | envpool SPS | gymnasium SPS |\n|---|---|---|---|")
    for env_id in env_ids:
        sps: dict[str, list[float]] = {"envpool": [], "gymnasium": []}
        for seed in range(3):
            for backend in (("envpool", "gymnasium") if seed % 2 == 0 else ("gymnasium", "envpool")):
                config = {"tensorboard": False, "seed": seed, "env_backend": backend, "n_epochs": 1, **SETTINGS[env_id]}
                agent = PPO(env_id, config, preset=None, verbose=False, progress_bar=False)
                started = time.perf_counter()
                agent.learn()
                sps[backend].append(agent.global_step / (time.perf_counter() - started))
        s = SETTINGS[env_id]
        envpool_sps, gymnasium_sps = statistics.median(sps["envpool"]), statistics.median(sps["gymnasium"])
        print(f"| {env_id} | {s['n_envs']} x {s['n_steps']} | {envpool_sps:,.0f} | {gymnasium_sps:,.0f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(SETTINGS))
