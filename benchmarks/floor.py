"""What the machine allows: the fastest a PPO run at given settings could go here, part by part.

A PPO update at fixed settings needs n_steps vector-env steps, n_steps acting passes (policy forward
and sampling on n_envs observations) and n_epochs x minibatches gradient steps. This script times
each of those on its own, in one process, with ppokit's own env, policy and engine:

- env step: the vector env ppokit builds for the preset, stepped with the policy's actions;
- acting: ``Policy.prepare`` + ``Policy.sample`` on one step's observations;
- gradient step: one ``engine.update`` of one epoch over one minibatch of the preset's size;

and gives the ceiling n_envs * n_steps / (n_steps * (env + acting) + gradient steps * gradient step),
which leaves out everything else (GAE, scoring, bookkeeping, logging). It then trains with the preset
and reports the SPS reached, as a fraction of that ceiling. Medians of repeated blocks.

    python benchmarks/floor.py [--presets CartPole-v1 CartPole-v1-cleanrl Pendulum-v1]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from ppokit import PPO  # noqa: E402
from ppokit.gym.presets import load_preset  # noqa: E402


def per_call_us(function, calls: int, blocks: int = 7) -> float:
    """Median over ``blocks`` of the mean microseconds per call in a block of ``calls`` calls."""
    function()
    times = []
    for _ in range(blocks):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        times.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(times)


def parts(preset: str) -> dict:
    env_id, config = load_preset(preset)
    agent = PPO(env_id, config | {"seed": 0}, preset=None, verbose=False, progress_bar=False)
    agent._ensure_envs()
    policy, envs, rng = agent.policy, agent.envs, np.random.default_rng(0)
    raw_obs = agent.collector.next_raw_obs
    obs = policy.prepare(raw_obs)
    env_actions = policy.actions_to_env(policy.act(obs, rng)[0])

    act_us = per_call_us(lambda: policy.act(policy.prepare(raw_obs), rng), 2000)
    env_us = per_call_us(lambda: envs.step(env_actions), 500)

    size = agent.config.minibatch_size
    rows = rng.integers(0, len(obs), size)
    sample_obs = obs[rows] + rng.normal(0, 0.1, (size, obs.shape[1])).astype(np.float32)
    actions = policy.act(sample_obs, rng)[0]
    logprobs, values = agent.engine.score(sample_obs, actions)
    samples = {"obs": sample_obs, "actions": actions, "logprobs": logprobs, "values": values,
               "advantages": rng.standard_normal(size).astype(np.float32), "returns": values + rng.standard_normal(size).astype(np.float32)}
    one_step = dataclasses.replace(agent._update_settings(agent.config.clip_range), n_epochs=1, minibatch_size=size)
    order = np.arange(size)
    grad_us = per_call_us(lambda: agent.engine.update(samples, one_step, lambda epoch: order), 200)

    c = agent.config
    rollout = c.n_envs * c.n_steps
    grad_steps = c.n_epochs * math.ceil(rollout / c.minibatch_size)
    rollout_ms = c.n_steps * (env_us + act_us) / 1000
    update_ms = grad_steps * grad_us / 1000
    agent.close()

    trainer = PPO(env_id, config | {"seed": 0, "total_steps": min(config["total_steps"], 50 * rollout)}, preset=None, verbose=False, progress_bar=False)
    started = time.perf_counter()
    trainer.learn()
    reached = trainer.global_step / (time.perf_counter() - started)
    return {"preset": preset, "n_envs": c.n_envs, "n_steps": c.n_steps, "grad_steps": grad_steps, "minibatch": c.minibatch_size,
            "env_us": env_us, "act_us": act_us, "grad_us": grad_us, "rollout_ms": rollout_ms, "update_ms": update_ms,
            "ceiling_sps": rollout / ((rollout_ms + update_ms) / 1000), "reached_sps": reached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["CartPole-v1", "CartPole-v1-cleanrl", "Pendulum-v1"])
    args = parser.parse_args()
    print("| preset | envs x steps | env step us | acting us | gradient steps x minibatch | us per gradient step "
          "| rollout ms | update ms | ceiling SPS | SPS reached | reached / ceiling |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        r = parts(preset)
        print(f"| `{r['preset']}` | {r['n_envs']} x {r['n_steps']} | {r['env_us']:.1f} | {r['act_us']:.1f} | "
              f"{r['grad_steps']} x {r['minibatch']} | {r['grad_us']:.0f} | {r['rollout_ms']:.1f} | {r['update_ms']:.1f} | "
              f"{r['ceiling_sps']:,.0f} | {r['reached_sps']:,.0f} | {r['reached_sps'] / r['ceiling_sps']:.0%} |")


if __name__ == "__main__":
    main()
