"""ppokit: Proximal Policy Optimization on one core, for Gymnasium environments and language models."""

__version__ = "0.1.0"

from ppokit.errors import ConfigError, EnvError, PPOKitError, UnsupportedSpaceError  # noqa: E402


def __getattr__(name):
    # PPO pulls in gymnasium; load it only when asked so `ppokit.core` stays torch-only.
    if name == "PPO":
        from ppokit.gym.agent import PPO

        return PPO
    if name == "PPOConfig":
        from ppokit.config import PPOConfig

        return PPOConfig
    raise AttributeError(f"module 'ppokit' has no attribute {name!r}")


__all__ = ["PPO", "PPOConfig", "PPOKitError", "ConfigError", "EnvError", "UnsupportedSpaceError"]
