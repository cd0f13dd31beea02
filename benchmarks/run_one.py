"""One training run of ppokit or Stable-Baselines3 with a ppokit preset's hyperparameters.

Run in a fresh process per (library, env, seed) so that start-up costs and memory are measured alike.
Writes a JSON with the learning curve, SPS, time and steps to the threshold and the final evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from ppokit.gym.presets import load_preset  # noqa: E402
from ppokit.run_logging import process_uptime  # noqa: E402

THRESHOLDS = {"CartPole-v1": 475.0, "Pendulum-v1": -250.0}


class Curve:
    """Mean of the last 20 training episodes, sampled whenever an episode ends."""

    def __init__(self, threshold: float):
        self.recent: deque[float] = deque(maxlen=20)
        self.points: list[tuple[int, float, float]] = []  # (step, seconds since process start, mean of last 20)
        self.threshold = threshold
        self.reached: tuple[int, float] | None = None

    def add(self, step: int, episode_return: float) -> None:
        self.recent.append(episode_return)
        if len(self.recent) < self.recent.maxlen:
            return
        mean, now = float(np.mean(self.recent)), process_uptime()
        self.points.append((step, now, mean))
        if self.reached is None and mean >= self.threshold:
            self.reached = (step, now)


def run_ppokit(env_id: str, seed: int, config: dict, curve: Curve, overrides: dict | None = None):
    from ppokit import PPO

    agent = PPO(env_id, config | {"seed": seed} | (overrides or {}), preset=None, verbose=False, progress_bar=False)  # config: a whole preset
    def on_update(metrics):
        for episode_return, _length in agent.logger.last_episodes:
            curve.add(int(metrics["global_step"]), episode_return)

    started = time.perf_counter()
    agent.learn(callback=on_update)
    seconds = time.perf_counter() - started
    return agent.global_step, seconds, lambda obs, deterministic: agent.predict(obs, deterministic=deterministic)


def run_ppokit_sync(env_id: str, seed: int, config: dict, curve: Curve):
    """ppokit on gymnasium's per-copy envs in a SyncVectorEnv: the very env code Stable-Baselines3 steps."""
    return run_ppokit(env_id, seed, config, curve, {"vec_env": "sync"})


def run_sb3(env_id: str, seed: int, config: dict, curve: Curve):
    import torch
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)

    def schedule(value, kind):
        return (lambda progress_remaining: progress_remaining * value) if kind == "linear" else value

    class EpisodeCurve(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    curve.add(self.num_timesteps, float(info["episode"]["r"]))
            return True

    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[config.get("activation", "tanh")]
    hidden = config.get("hidden_sizes", [64, 64])
    env = make_vec_env(env_id, n_envs=config["n_envs"], seed=seed)
    normalizing = config.get("normalize_obs", False) or config.get("normalize_reward", False)
    if normalizing:  # ppokit's normalize_obs / normalize_reward are SB3's VecNormalize
        env = VecNormalize(env, norm_obs=config.get("normalize_obs", False), norm_reward=config.get("normalize_reward", False),
                           clip_obs=config.get("obs_clip", 10.0), clip_reward=config.get("reward_clip", 10.0), gamma=config.get("gamma", 0.99))
    model = SB3PPO(
        "MlpPolicy", env, seed=seed, device="cpu", verbose=0,
        n_steps=config["n_steps"], batch_size=config.get("minibatch_size", 64), n_epochs=config.get("n_epochs", 10),
        gamma=config.get("gamma", 0.99), gae_lambda=config.get("gae_lambda", 0.95),
        learning_rate=schedule(config.get("learning_rate", 3e-4), config.get("lr_schedule", "constant")),
        clip_range=schedule(config.get("clip_range", 0.2), config.get("clip_schedule", "constant")),
        clip_range_vf=config.get("clip_range_vf"), ent_coef=config.get("ent_coef", 0.0), vf_coef=config.get("vf_coef", 0.5),
        max_grad_norm=config.get("max_grad_norm", 0.5), target_kl=config.get("target_kl"),
        policy_kwargs=dict(net_arch=dict(pi=hidden, vf=hidden), activation_fn=activation,
                           ortho_init=config.get("ortho_init", True), log_std_init=config.get("log_std_init", 0.0)),
    )
    started = time.perf_counter()
    model.learn(total_timesteps=config["total_steps"], callback=EpisodeCurve())
    seconds = time.perf_counter() - started
    # the evaluation feeds raw observations: normalize them with the frozen training statistics, as ppokit does
    prepare = (lambda obs: env.normalize_obs(obs)) if config.get("normalize_obs", False) else (lambda obs: obs)
    return model.num_timesteps, seconds, lambda obs, deterministic: model.predict(prepare(obs), deterministic=deterministic)[0]


RUNNERS = {"ppokit": run_ppokit, "ppokit-sync": run_ppokit_sync, "sb3": run_sb3}


def evaluate(env_id: str, act, episodes: int = 20, seed: int = 10_000, deterministic: bool = True) -> float:
    """The same evaluation for both libraries: exactly ``episodes`` episodes, deterministic (the mean or
    most likely action) or sampling actions as in training."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs[None], deterministic)[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lib", choices=list(RUNNERS), required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--preset", help="ppokit preset whose hyperparameters both libraries use (default: --env)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--total-steps", type=int, help="step budget (default: the preset's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override preset values for both libraries (VALUE is parsed as YAML), e.g. n_envs=16")
    parser.add_argument("--no-eval", action="store_true", help="skip the final evaluation (final_eval is null)")
    parser.add_argument("--sampled-eval", action="store_true",
                        help="also evaluate with sampled actions, as CleanRL's evaluation does (final_eval_sampled)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    config = load_preset(args.preset or args.env)[1]
    if args.total_steps:
        config["total_steps"] = args.total_steps
    for item in args.set:
        key, _, value = item.partition("=")
        config[key] = yaml.safe_load(value)
    curve = Curve(THRESHOLDS.get(args.env, float("inf")))
    runner = RUNNERS[args.lib]
    steps, seconds, act = runner(args.env, args.seed, config, curve)
    import resource

    result = {
        "lib": args.lib, "env": args.env, "preset": args.preset or args.env, "seed": args.seed, "steps": steps, "train_seconds": seconds,
        "sps": steps / seconds,
        "steps_to_threshold": curve.reached[0] if curve.reached else None,
        "seconds_to_threshold": curve.reached[1] if curve.reached else None,
        "final_eval": None if args.no_eval else evaluate(args.env, act),
        "final_eval_sampled": evaluate(args.env, act, deterministic=False) if args.sampled_eval else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "curve": curve.points,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    print(f"{args.lib:7s} {args.env:12s} seed {args.seed}: {result['sps']:,.0f} SPS, eval {result['final_eval']}, "
          f"to threshold {result['seconds_to_threshold']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
