"""Does ppokit compute what Stable-Baselines3 computes? Two checks on one env with the same weights.

    python benchmarks/sb3_parity_check.py [ENV_ID]     # default Ant-v5; about 15 s; needs SB3 (make bench installs it)

1. **Update**: SB3 collects one 2048-step rollout (VecNormalize, PPO defaults); ppokit's numpy
   engine runs the full update (10 epochs x 32 minibatches of 64) on that rollout with SB3's
   initial weights and SB3's minibatch order. The weights after the update are compared.
2. **Rollout**: both libraries step the same env from the same seed with the same weights and an
   action mean that does not depend on the observation (the policy head's weight is zeroed, log-std
   -30), so both take bit-identical actions and the MuJoCo state cannot drift apart. Normalized
   observations, scaled rewards and advantages are compared, with time-limit truncations in the
   rollout (``max_episode_steps`` 300).

Prints the differences and exits 1 if one is above its tolerance. A difference of a few 1e-3 in the
advantages is expected: SB3 normalizes a truncated episode's final observation after adding the
next episode's first observation to the statistics, ppokit before.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from stable_baselines3 import PPO as SB3PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from ppokit import PPO
from ppokit.core.settings import UpdateSettings

N_STEPS = 2048
LAYERS = {"actor.0": "mlp_extractor.policy_net.0", "actor.2": "mlp_extractor.policy_net.2", "actor.4": "action_net",
          "critic.0": "mlp_extractor.value_net.0", "critic.2": "mlp_extractor.value_net.2", "critic.4": "value_net"}
PAIRS = [(f"{ours}.{kind}", f"{theirs}.{kind}") for ours, theirs in LAYERS.items() for kind in ("weight", "bias")] + [("log_std", "log_std")]


class _Continue(BaseCallback):
    def _on_step(self) -> bool:
        return True


def build_pair(env_id: str, env_kwargs: dict) -> tuple[SB3PPO, VecNormalize, PPO]:
    """An SB3 PPO at the zoo's normalized defaults and a ppokit agent at the same values, sharing SB3's initial weights."""
    venv = VecNormalize(make_vec_env(env_id, n_envs=1, seed=0, env_kwargs=env_kwargs), gamma=0.99)
    sb3 = SB3PPO("MlpPolicy", venv, seed=0, verbose=0, device="cpu")
    config = {"n_envs": 1, "n_steps": N_STEPS, "total_steps": N_STEPS, "minibatch_size": 64, "n_epochs": 10, "seed": 0,
              "normalize_obs": True, "normalize_reward": True, "learning_rate": 3e-4, "ent_coef": 0.0, "clip_range": 0.2,
              "max_grad_norm": 0.5, "vf_coef": 0.5, "gamma": 0.99, "gae_lambda": 0.95, "env_kwargs": env_kwargs,
              "engine": "numpy", "tensorboard": False}
    agent = PPO(env_id, config, preset=None, verbose=False, progress_bar=False)
    copy_weights(sb3, agent)
    return sb3, venv, agent


def copy_weights(sb3: SB3PPO, agent: PPO) -> None:
    state = sb3.policy.state_dict()
    for ours, theirs in PAIRS:
        np.copyto(agent.policy.params.views[ours], state[theirs].numpy())


def collect_sb3_rollout(sb3: SB3PPO):
    sb3._setup_learn(N_STEPS, None)
    callback = _Continue()
    callback.init_callback(sb3)
    sb3.collect_rollouts(sb3.env, callback, sb3.rollout_buffer, N_STEPS)
    return sb3.rollout_buffer


def check_update(env_id: str) -> float:
    sb3, _, agent = build_pair(env_id, {})
    before = {theirs: tensor.clone() for theirs, tensor in sb3.policy.state_dict().items()}
    buffer = collect_sb3_rollout(sb3)
    samples = {"obs": buffer.observations.reshape(N_STEPS, -1).astype(np.float32),
               "actions": buffer.actions.reshape(N_STEPS, -1).astype(np.float32)}
    for ours, theirs in (("logprobs", "log_probs"), ("values", "values"), ("advantages", "advantages"), ("returns", "returns")):
        samples[ours] = getattr(buffer, theirs).reshape(-1).astype(np.float32)
    # SB3 draws each epoch's minibatch order with np.random.permutation: replay the same draws
    np.random.seed(123)
    orders = [np.random.permutation(N_STEPS) for _ in range(10)]
    settings = UpdateSettings(n_epochs=10, minibatch_size=64, clip_range=0.2, vf_coef=0.5, max_grad_norm=0.5, ent_coef=0.0)
    agent.engine.update(samples, settings, lambda epoch: orders[epoch])
    np.random.seed(123)
    sb3.train()
    after = sb3.policy.state_dict()
    worst = 0.0
    for ours, theirs in PAIRS:
        difference = float(np.abs(agent.policy.params.views[ours] - after[theirs].numpy()).max())
        moved = float((after[theirs] - before[theirs]).abs().max())
        print(f"  {ours:16s} |ppokit - SB3| {difference:.2e}   (the update moved it by up to {moved:.2e})")
        worst = max(worst, difference)
    return worst


def check_rollout(env_id: str) -> tuple[float, float, float]:
    sb3, _, agent = build_pair(env_id, {"max_episode_steps": 300})
    with torch.no_grad():  # an observation-independent, all but deterministic action: no chaotic drift
        sb3.policy.log_std.fill_(-30.0)
        sb3.policy.action_net.weight.zero_()
        action_size = sb3.policy.action_net.bias.numel()
        sb3.policy.action_net.bias.copy_(torch.linspace(-0.5, 0.5, action_size))
    copy_weights(sb3, agent)
    buffer = collect_sb3_rollout(sb3)
    captured = {}

    def capture(samples, settings, order):
        captured.update(samples)
        return {}

    agent._ensure_envs()
    agent.engine.update = capture
    agent._train_on_rollout(agent._update_settings(0.2))
    collector = agent.collector
    truncated = collector.truncated.reshape(-1)
    obs_difference = float(np.abs(buffer.observations.reshape(N_STEPS, -1) - collector.obs.reshape(N_STEPS, -1)).max())
    # SB3 folds gamma * V(final obs) into a truncated step's reward; ppokit keeps it as that step's next value
    reward_difference = float(np.abs(buffer.rewards.reshape(-1) - collector.rewards.reshape(-1))[~truncated].max())
    advantage_difference = float(np.abs(buffer.advantages.reshape(-1) - captured["advantages"]).max())
    print(f"  {int(truncated.sum())} time-limit truncations in {N_STEPS} steps")
    print(f"  normalized observations |ppokit - SB3| {obs_difference:.2e}")
    print(f"  scaled rewards          |ppokit - SB3| {reward_difference:.2e}")
    print(f"  advantages              |ppokit - SB3| {advantage_difference:.2e}   (mean |advantage| {np.abs(buffer.advantages).mean():.2f})")
    return obs_difference, reward_difference, advantage_difference


def main() -> None:
    torch.set_num_threads(1)
    env_id = sys.argv[1] if len(sys.argv) > 1 else "Ant-v5"
    print(f"{env_id}: one update on SB3's rollout, SB3's weights, SB3's minibatch order")
    weight_difference = check_update(env_id)
    print(f"{env_id}: one rollout with identical actions")
    obs_difference, reward_difference, advantage_difference = check_rollout(env_id)
    failures = [name for name, value, tolerance in (("weights", weight_difference, 1e-5), ("observations", obs_difference, 1e-4),
                                                     ("rewards", reward_difference, 1e-5), ("advantages", advantage_difference, 0.05))
                if value > tolerance]
    print("parity: " + ("holds" if not failures else "BROKEN in " + ", ".join(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
