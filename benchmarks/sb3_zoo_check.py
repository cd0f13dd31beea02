"""Stable-Baselines3 at rl-baselines3-zoo's Ant-v3 values, on a v5 env, for one seed: a side check of ppokit's Ant-v5 preset.

    python benchmarks/sb3_zoo_check.py SEED [ENV_ID]     # default Ant-v5; 20-40 minutes here; needs SB3 (make bench installs it)

The zoo's Ant-v3 entry is VecNormalize (gamma 0.99, as the zoo passes the algorithm's gamma) and PPO's
defaults, one env, 1M steps. Evaluation as bench_returns.py: 20 deterministic episodes (env seeds
10000-10019), observations normalized with the frozen training statistics. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize


def main() -> None:
    torch.set_num_threads(1)  # SB3 is fastest on one thread on this machine (benchmarks/README.md)
    seed = int(sys.argv[1])
    env_id = sys.argv[2] if len(sys.argv) > 2 else "Ant-v5"
    started = time.perf_counter()
    venv = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), gamma=0.99)
    model = PPO("MlpPolicy", venv, seed=seed, verbose=0, device="cpu")
    model.learn(1_000_000)
    venv.training, venv.norm_reward = False, False
    env = gym.make(env_id)
    returns = []
    for episode in range(20):
        obs, _ = env.reset(seed=10_000 + episode)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(venv.normalize_obs(obs[None]), deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    print(json.dumps({"seed": seed, "env_id": env_id, "eval_mean": float(np.mean(returns)),
                      "eval_returns": [round(r, 1) for r in returns], "minutes": (time.perf_counter() - started) / 60}))


if __name__ == "__main__":
    main()
