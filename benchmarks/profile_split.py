"""Where one training run's time goes: rollout (acting + env) vs scoring/GAE vs update, per engine.

    python benchmarks/profile_split.py [--env CartPole-v1] [--engines numpy torch] [--vec-envs auto sync]

Wraps the collector's collect() and the engine's update() with timers around a normal learn() on
the env's preset, and prints milliseconds per update for each part. Also prints cProfile's top
functions by own time for the first engine and vec_env given.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

from ppokit import PPO
from ppokit.gym.presets import load_preset


def split(env_id: str, engine: str, vec_env: str, profile: bool = False) -> dict:
    agent = PPO(env_id, load_preset(env_id)[1] | {"engine": engine, "vec_env": vec_env}, verbose=False, progress_bar=False)
    agent._ensure_envs()
    spent = {"rollout": 0.0, "update": 0.0}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started
        return wrapper

    agent.collector.collect = timed("rollout", agent.collector.collect)
    agent.engine.update = timed("update", agent.engine.update)
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    agent.learn()
    if profiler:
        profiler.disable()
    total = time.perf_counter() - started
    updates = agent.num_updates
    result = {"engine": engine, "vec_env": vec_env, "sps": agent.global_step / total,
              "ms_per_update": 1000 * total / updates,
              "rollout_ms": 1000 * spent["rollout"] / updates, "update_ms": 1000 * spent["update"] / updates}
    result["other_ms"] = result["ms_per_update"] - result["rollout_ms"] - result["update_ms"]
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
        result["profile"] = out.getvalue()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--engines", nargs="+", default=["numpy", "torch"])
    parser.add_argument("--vec-envs", nargs="+", default=["auto", "sync"])
    args = parser.parse_args()
    print("| engine | vec_env | SPS | ms per update | rollout ms | update ms | scoring, GAE, logging ms |")
    print("|---|---|---|---|---|---|---|")
    for engine in args.engines:
        for vec_env in args.vec_envs:
            r = split(args.env, engine, vec_env)
            print(f"| {engine} | {vec_env} | {r['sps']:,.0f} | {r['ms_per_update']:.2f} | {r['rollout_ms']:.2f} | {r['update_ms']:.2f} | {r['other_ms']:.2f} |")
    profiled = split(args.env, args.engines[0], args.vec_envs[0], profile=True)
    print(f"\ncProfile, engine {args.engines[0]}, vec_env {args.vec_envs[0]} (profiler overhead included):\n")
    print(profiled["profile"])


if __name__ == "__main__":
    main()
