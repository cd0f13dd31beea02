"""ppokit: Proximal Policy Optimization on one core, for Gymnasium environments and language models."""

__version__ = "0.1.0"

from ppokit.errors import ConfigError, EnvError, PPOKitError, UnsupportedSpaceError  # noqa: E402
from ppokit.lazy_exports import lazy_getattr  # noqa: E402

# PPO pulls in gymnasium; load it only when asked so `ppokit.core` stays torch-only.
__getattr__ = lazy_getattr(__name__, {"PPO": "gym.agent", "PPOConfig": "gym.config"}, globals())

__all__ = ["PPO", "PPOConfig", "PPOKitError", "ConfigError", "EnvError", "UnsupportedSpaceError"]
