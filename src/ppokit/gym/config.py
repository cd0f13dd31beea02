"""Typed configuration for Gymnasium training: defaults, YAML presets, overrides and validation.

Precedence, lowest first: the defaults below < a preset < a --config YAML file < key=value
overrides < explicit command-line flags (--seed, --total-steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ppokit.config import ConfigBase, check_range
from ppokit.core.settings import UpdateFields
from ppokit.errors import ConfigError

# the longest chunk lstm_sequence_length=0 picks: long enough to carry the memory a task needs over a few dozen steps, short
# enough that a minibatch holds several chunks of different env copies and episodes
MAX_AUTO_SEQUENCE = 32


@dataclass
class PPOConfig(ConfigBase, UpdateFields):
    """Hyperparameters of one PPO run on a Gymnasium environment; the update's own (n_epochs, minibatch_size,
    clip_range, ...) come from UpdateFields with their defaults."""

    # --- rollout ---
    n_envs: int = 8
    """Number of environment copies stepped together."""
    vec_env: Literal["auto", "sync", "async", "vector"] = "auto"
    """'sync' steps the copies in this process; 'async' runs one process each (for costly envs);
    'vector' uses the env's own numpy-vectorized implementation (CartPole); 'auto' picks 'vector'
    where it exists, else 'sync'. Applies to the gymnasium backend."""
    env_backend: str = "gymnasium"
    """A name of ppokit.gym.envs.make.ENV_BACKENDS, which training and evaluation both step: 'gymnasium', or
    'envpool', the copies in envpool's C++ pool (pip install 'ppokit[envpool]'; its ids only).
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

    # --- optimization ---
    learning_rate: float = 3e-4
    """Adam learning rate (initial value when lr_schedule is 'linear')."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """'linear' anneals the learning rate to 0 over training."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    clip_schedule: Literal["constant", "linear"] = "constant"
    """'linear' anneals the clip range to 0 over training."""

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
    policy: Literal["auto", "mlp", "cnn", "multi_input", "lstm"] = "auto"
    """'mlp': actor and critic MLPs over flat observations (a Dict's keys packed side by side);
    'cnn': the Nature CNN shared by actor and critic, for image observations (uint8 HxWxC or CxHxW);
    'multi_input': one encoder per key of a Dict or Tuple observation (the CNN for image keys),
    concatenated, then the actor and critic MLPs; 'lstm': the encoder the observation calls for, then
    an LSTM (lstm_hidden_size), then the MLPs; 'auto': the CNN for images, multi_input for a Dict or
    Tuple with an image key, else the MLP. A torch module of your own is passed as PPO(..., module=...)."""
    features_extractor: str = "auto"
    """The first part of a torch policy, from observations to features, before the LSTM and the heads: 'flatten',
    'nature_cnn', 'multi_input', a name given to ppokit.gym.policies.features.register_features, or
    'package.module:Class' (imported; loading the model then takes the same features_extractor=). 'auto': the one the
    observation space calls for (the numpy MLP for flat observations)."""
    module: str = ""
    """'package.module:Factory': a torch.nn.Module of your own for the whole policy, Factory() mapping a batch of
    observations to (distribution parameters, values), as PPO(..., module=...) takes; loading the model then takes the
    same module=."""
    lstm_hidden_size: int = 256
    """Units of the LSTM of policy 'lstm' (256, as sb3-contrib's RecurrentPPO)."""
    lstm_shared: bool = False
    """Policy 'lstm': one LSTM shared by the actor and the critic (true), or one each (false, as sb3-contrib's RecurrentPPO:
    the value loss does not shape the actor's memory)."""
    lstm_sequence_length: int = 0
    """Policy 'lstm': the update replays chunks of this many consecutive steps of one env copy, each from the memory the rollout
    had at its first step (truncated backpropagation through time); a minibatch is minibatch_size / lstm_sequence_length
    chunks. 0: the longest length up to 32 steps that divides both n_steps and minibatch_size."""
    action_masks: Literal["auto", "on", "off"] = "auto"
    """Invalid-action masks (Discrete and MultiDiscrete actions), from an 'action_mask' key of a Dict
    observation or of info, or an action_masks() method of the env: 'auto' uses them when the env
    gives them, 'on' requires them, 'off' ignores them."""
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
    engine: Literal["auto", "numpy", "torch"] = "auto"
    """What scores rollouts and runs the minibatch step: 'numpy' (hand-written gradients, fastest for
    MLPs over flat observations, the only policy it trains) or 'torch' (autograd, any policy); 'auto':
    numpy for the MLP, torch otherwise."""
    torch_threads: int = 1
    """Threads torch may use with engine 'torch'; small networks run fastest on one."""
    blas_threads: int = 1
    """Threads numpy's BLAS (OpenBLAS, MKL) may use while ppokit trains and evaluates; small matrices
    run fastest on one (processes, not threads, should use the cores); 0 leaves the library's default."""
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
    log_interval: int = 0
    """Print a console summary every this many updates, and after the last one; 0: about 20 lines per run."""
    tensorboard: bool = True
    """Write TensorBoard event files into the run directory."""

    def validate(self) -> None:
        """Check every value's range and the ways they must agree with each other."""
        self.validate_update_fields()
        positive_ints = ["n_envs", "n_steps", "total_steps", "eval_episodes", "torch_threads", "keep_checkpoints", "max_nonfinite_steps",
                         "lstm_hidden_size"]
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        for name in ["learning_rate", "adam_eps", "obs_clip", "reward_clip"]:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value}")
        if self.blas_threads < 0:
            raise ConfigError(f"blas_threads must be 0 (the BLAS library's default) or a positive number of threads, got {self.blas_threads}")
        for name in ["eval_interval", "checkpoint_interval"]:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (disabled) or a positive number of updates, got {getattr(self, name)}")
        if self.log_interval < 0:
            raise ConfigError(f"log_interval must be 0 (about 20 lines per run) or a positive number of updates, got {self.log_interval}")
        if not self.hidden_sizes or any((not isinstance(h, int)) or h < 1 for h in self.hidden_sizes):
            raise ConfigError(f"hidden_sizes must be a non-empty list of positive integers, got {self.hidden_sizes}")
        from ppokit.gym.envs.make import ENV_BACKENDS  # (here: the env layer needs no config to import)

        if self.env_backend not in ENV_BACKENDS:
            raise ConfigError(f"env_backend must be one of {list(ENV_BACKENDS)}, got {self.env_backend!r}")
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

        if self.lstm_sequence_length < 0:
            raise ConfigError(f"lstm_sequence_length must be 0 (chosen from n_steps and minibatch_size) or a positive number of steps, "
                              f"got {self.lstm_sequence_length}")
        if self.policy == "lstm":
            length = self.sequence_length
            for name in ("n_steps", "minibatch_size"):
                if getattr(self, name) % length:
                    raise ConfigError(f"policy 'lstm' trains on chunks of lstm_sequence_length={length} steps: {name} ({getattr(self, name)}) "
                                      f"must be a multiple of it (set lstm_sequence_length to a divisor of n_steps and minibatch_size, "
                                      f"or 0 to have one chosen)")

    @property
    def sequence_length(self) -> int:
        """Policy 'lstm': the steps of each chunk the update replays (lstm_sequence_length, or the longest one up to
        MAX_AUTO_SEQUENCE that divides n_steps and minibatch_size)."""
        if self.lstm_sequence_length:
            return self.lstm_sequence_length
        common = math.gcd(self.n_steps, self.minibatch_size)
        return max(d for d in range(1, min(common, MAX_AUTO_SEQUENCE) + 1) if common % d == 0)

    @property
    def rollout_size(self) -> int:
        return self.n_envs * self.n_steps
