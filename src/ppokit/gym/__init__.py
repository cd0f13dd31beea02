"""Gymnasium front end: vector envs, policies, rollout collection, the PPO trainer and presets."""

from ppokit.gym.agent import PPO

__all__ = ["PPO"]
