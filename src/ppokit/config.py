"""Typed configuration for Gymnasium training: defaults, YAML presets, overrides and validation.

Precedence, lowest first: the defaults below < a preset < a --config YAML file < key=value
overrides < explicit command-line flags (--seed, --total-steps).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ppokit.errors import ConfigError


class ConfigBase:
    """Shared by every config dataclass: build from a mapping, type-check each key, then validate()."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "ConfigBase":
        """Build a validated config; unknown keys and wrong types are a ConfigError naming the key."""
        config = cls()
        config.update(values, source=source)
        return config

    def update(self, values: dict[str, Any], source: str = "config") -> "ConfigBase":
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of config keys to values, got {type(values).__name__}")
        hints = typing.get_type_hints(type(self))
        for key, value in values.items():
            if key not in hints:
                raise ConfigError(f"{source}: unknown config key {key!r}{_suggest(key, self.field_names())}")
            setattr(self, key, _coerce(key, value, hints[key], source))
        self.validate()
        return self

    def validate(self) -> None:
        """Range checks; each config overrides this."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PPOConfig(ConfigBase):
    """Hyperparameters of one PPO run on a Gymnasium environment."""

    # --- rollout ---
    n_envs: int = 8
    """Number of environment copies stepped together."""
    vec_env: Literal["auto", "sync", "async", "vector"] = "auto"
    """'sync' steps the copies in this process; 'async' runs one process each (for costly envs);
    'vector' uses the env's own numpy-vectorized implementation (CartPole); 'auto' picks 'vector'
    where it exists, else 'sync'. Applies to the gymnasium backend."""
    env_backend: Literal["gymnasium", "envpool"] = "gymnasium"
    """'envpool' steps the copies in envpool's C++ pool (pip install 'ppokit[envpool]'; its ids only).
    Not the default: on the 2-core benchmark machine it was no faster than gymnasium for CartPole,
    Pendulum and HalfCheetah (benchmarks/README.md)."""
    n_steps: int = 256
    """Steps collected per env before each update; one rollout is n_envs * n_steps samples."""
    total_steps: int = 1_000_000
    """Environment steps to train for (summed over the env copies)."""
    env_kwargs: dict = field(default_factory=dict)
    """Keyword arguments passed to gymnasium.make."""

    # --- returns and advantages ---
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda: 0 is one-step TD, 1 is Monte Carlo."""
    bootstrap_truncated: bool = True
    """Bootstrap time-limit truncations from V(final observation) instead of treating them as terminal."""
    normalize_advantage: bool = True
    """Whiten advantages per minibatch."""

    # --- optimization ---
    n_epochs: int = 10
    """Passes over each rollout."""
    minibatch_size: int = 64
    """Samples per gradient step (rl-baselines3-zoo calls it batch_size)."""
    learning_rate: float = 3e-4
    """Adam learning rate (initial value when lr_schedule is 'linear')."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """'linear' anneals the learning rate to 0 over training."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    clip_range: float = 0.2
    """PPO ratio clip: the ratio is clipped to [1 - clip_range, 1 + clip_range]."""
    clip_schedule: Literal["constant", "linear"] = "constant"
    """'linear' anneals the clip range to 0 over training."""
    clip_range_vf: float | None = None
    """Clip the value update around the old values by this much; null disables value clipping."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss (mean squared error, no factor 1/2)."""
    max_grad_norm: float | None = 0.5
    """Global gradient-norm clip; null disables it."""
    target_kl: float | None = None
    """Stop the epochs of an update early once the approximate KL exceeds 1.5 x this; null disables."""

    # --- normalization (statistics are saved inside the model) ---
    normalize_obs: bool = False
    """Normalize observations with running mean and variance."""
    normalize_reward: bool = False
    """Scale rewards by the running standard deviation of the discounted return."""
    obs_clip: float = 10.0
    """Clip normalized observations to [-obs_clip, obs_clip]."""
    reward_clip: float = 10.0
    """Clip scaled rewards to [-reward_clip, reward_clip]."""

    # --- policy network ---
    hidden_sizes: list = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of both the actor and the critic."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Hidden activation."""
    ortho_init: bool = True
    """Orthogonal init: gain sqrt(2) hidden, 0.01 policy head, 1.0 value head."""
    log_std_init: float = 0.0
    """Initial log standard deviation of continuous actions (state-independent)."""

    # --- run ---
    seed: int = 0
    """Seed of torch, numpy, the envs and their action spaces."""
    engine: Literal["numpy", "torch"] = "numpy"
    """What scores rollouts and runs the update: 'numpy' (hand-written gradients, fastest for these
    MLPs) or 'torch' (autograd through ppokit.core, the reference path)."""
    torch_threads: int = 1
    """Threads torch may use with engine 'torch'; small networks run fastest on one."""
    eval_episodes: int = 20
    """Episodes of the evaluation at the end of `ppokit train` (and of each periodic evaluation)."""
    eval_interval: int = 0
    """Evaluate every this many updates and keep the best model in run_dir/best_model; 0 disables."""
    checkpoint_interval: int = 50
    """Write a full training checkpoint every this many updates (and at the end); 0: only at the end."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep."""
    max_nonfinite_steps: int = 10
    """Gradient steps in a row with a non-finite loss or gradient (each skipped) before the run stops."""
    log_interval: int = 1
    """Print a console summary every this many updates."""
    tensorboard: bool = True
    """Write TensorBoard event files into the run directory."""

    def validate(self) -> None:
        """Check every value's range and the ways they must agree with each other."""
        positive_ints = ["n_envs", "n_steps", "total_steps", "n_epochs", "minibatch_size", "eval_episodes", "log_interval", "torch_threads",
                         "keep_checkpoints", "max_nonfinite_steps"]
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        _check_range("gamma", self.gamma, 0.0, 1.0)
        _check_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        for name in ["learning_rate", "clip_range", "adam_eps", "obs_clip", "reward_clip"]:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value}")
        for name in ["clip_range_vf", "max_grad_norm", "target_kl"]:
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number or null (disabled), got {value}")
        for name in ["ent_coef", "vf_coef"]:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a non-negative number, got {value}")
        for name in ["eval_interval", "checkpoint_interval"]:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (disabled) or a positive number of updates, got {getattr(self, name)}")
        if not self.hidden_sizes or any((not isinstance(h, int)) or h < 1 for h in self.hidden_sizes):
            raise ConfigError(f"hidden_sizes must be a non-empty list of positive integers, got {self.hidden_sizes}")
        rollout = self.n_envs * self.n_steps
        if self.total_steps < rollout:
            raise ConfigError(
                f"total_steps={self.total_steps} is smaller than one rollout "
                f"(n_envs * n_steps = {self.n_envs} * {self.n_steps} = {rollout}); "
                f"raise total_steps to at least {rollout} or lower n_envs / n_steps"
            )
        if self.minibatch_size > rollout:
            raise ConfigError(
                f"minibatch_size={self.minibatch_size} is larger than one rollout "
                f"(n_envs * n_steps = {rollout}); expected minibatch_size <= {rollout}"
            )

    @property
    def rollout_size(self) -> int:
        return self.n_envs * self.n_steps


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML so numbers, booleans, lists and null work."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. learning_rate=3e-4)")
        try:
            overrides[key.strip()] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            overrides[key.strip()] = raw
    return overrides


def _suggest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; valid keys are: {', '.join(choices)}"


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):
        raise ConfigError(f"{name} must be in [{low}, {high}], got {value}")


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Convert a YAML value to the field's type, or raise a ConfigError naming key and expected type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or str(origin) == "types.UnionType":
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0], source)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key} must be one of {list(args)}, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)  # YAML reads "1e-3" (no dot) as a string
                except ValueError:
                    pass
            raise ConfigError(f"{source}: {key} must be a number, got {value!r}")
        return float(value)
    if hint is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return list(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
        return value
    return value
