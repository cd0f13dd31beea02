"""What a config builds: the policy kind ('auto' resolved for the observation space), the policy, and the engine
that trains it.

The MLP over flat observations is the numpy policy (``policies.numpy_policy``), trained by the numpy engine or by
the torch engine over the same buffer; every other kind is a torch network built from parts
(``policies.torch_policy.build_network``) or a user's module, trained by the torch engine.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ppokit.errors import ConfigError
from ppokit.gym.config import PPOConfig
from ppokit.gym.engines.numpy_engine import NumpyEngine
from ppokit.gym.envs.spaces import has_image_part, is_image_space, is_multi_input
from ppokit.gym.policies.numpy_policy import Policy
from ppokit.gym.specs import import_spec


def resolve_policy_and_engine(config, observation_space: gym.Space, custom_module: bool) -> tuple[str, str]:
    """(policy kind, engine) for a config: 'auto' picks the CNN for images, one encoder per key for a
    Dict or Tuple with images, and numpy for an MLP over flat (or packed) observations."""
    policy = config.policy
    if custom_module:
        policy = "custom"
    elif policy == "auto":
        policy = "cnn" if is_image_space(observation_space) else "multi_input" if has_image_part(observation_space) else "mlp"
    if policy == "cnn" and not is_image_space(observation_space):
        raise ConfigError(f"policy 'cnn' needs image observations (a uint8 Box of shape HxWxC or CxHxW); this env has {observation_space}"
                          + (" (policy 'multi_input' gives each image key of a Dict a CNN)" if is_multi_input(observation_space) else ""))
    if policy == "multi_input" and not is_multi_input(observation_space):
        raise ConfigError(f"policy 'multi_input' needs Dict or Tuple observations; this env has {observation_space} (use 'auto')")
    if policy == "mlp" and has_image_part(observation_space):
        raise ConfigError(f"policy 'mlp' takes flat observations; {observation_space} has an image key: use 'multi_input' (or 'auto')")
    numpy_fits = is_numpy_mlp(policy, config)
    engine = config.engine
    if engine == "auto":
        engine = "numpy" if numpy_fits else "torch"
    if engine == "numpy" and not numpy_fits:
        what = f"features_extractor {config.features_extractor!r}" if policy == "mlp" else f"the {policy!r} policy"
        raise ConfigError(f"engine 'numpy' trains only the MLP policy over flat observations; {what} needs engine 'torch' (or 'auto')")
    return policy, engine


def is_numpy_mlp(kind: str, config) -> bool:
    """The MLP over the packed observation row: the numpy policy (ppokit's fast path), whichever engine trains it."""
    return kind == "mlp" and config.features_extractor in ("auto", "flatten")


def user_module(module, config):
    """The user's torch module: an instance given in Python, or built from ``config.module`` ('package.module:Factory')."""
    if module is not None or not config.module:
        return module
    factory = import_spec(config.module, "module")
    if not callable(factory):
        raise ConfigError(f"module {config.module!r} is not callable; expected a torch.nn.Module class or a function returning one")
    return factory()


def build_policy_and_engine(kind: str, engine: str, observation_space, action_space, config: PPOConfig, init_seed, module=None, world=None):
    """The actor-critic and the engine that trains it (``ppokit.gym.policies.protocol`` says which is which)."""
    if is_numpy_mlp(kind, config):
        policy = Policy(observation_space, action_space, config)
        policy.params.initialize(np.random.default_rng(init_seed), config.ortho_init, config.log_std_init)
        if engine == "numpy":
            return policy, NumpyEngine(policy.params, policy.dist, config.activation, config.learning_rate, config.adam_eps, world)
        from ppokit.gym.engines.torch_engine import TorchEngine  # imports torch: only when asked for

        return policy, TorchEngine.for_parameters(policy.params, policy.dist, config.activation, config.learning_rate, config.adam_eps,
                                                  config.torch_threads, world)
    from ppokit.gym.engines.torch_engine import TorchEngine
    from ppokit.gym.policies.torch_policy import TorchPolicy

    policy = TorchPolicy(observation_space, action_space, config, kind, module, init_seed=int(init_seed.generate_state(1)[0]))
    return policy, TorchEngine(policy, config.learning_rate, config.adam_eps, config.torch_threads, world)
