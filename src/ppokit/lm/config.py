"""Typed configuration of the three language-model trainers (same YAML + key=value style as `ppokit train`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ppokit.config import ConfigBase
from ppokit.core.settings import UpdateFields
from ppokit.errors import ConfigError


def _positive(config, names):
    for name in names:
        value = getattr(config, name)
        if value is None or not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {value}")


def _non_negative(config, names):
    for name in names:
        value = getattr(config, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{name} must be zero or a positive number, got {value}")


@dataclass
class _RunSettings:
    """Fields every language-model trainer shares (kept as plain dataclass fields so YAML sees one flat mapping)."""

    seed: int = 0
    """Seed of torch, Python and the data order."""
    log_interval: int = 10
    """Print a console summary every this many optimizer steps (PPO: updates)."""
    checkpoint_interval: int = 0
    """Save a checkpoint every this many optimizer steps (PPO: updates) for --resume; 0: none while training
    (PPO writes one at the end; SIGINT/SIGTERM always write one)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    tensorboard: bool = True
    """Write TensorBoard event files into the run directory."""
    torch_threads: int = 0
    """Threads torch may use; 0 leaves torch's default."""
    device: str = "auto"
    """Where models and tensors live: 'auto' (CUDA if available, else MPS, else CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'."""
    precision: Literal["auto", "fp32", "bf16-mixed", "fp16-mixed", "bf16"] = "auto"
    """'fp32'; 'bf16-mixed' (float32 weights, bfloat16 autocast); 'fp16-mixed' (CUDA, with loss scaling); 'bf16'
    (weights in bfloat16, for memory); 'auto': bf16-mixed on CUDA (fp16-mixed without bfloat16 support), else fp32."""
    gradient_checkpointing: bool = False
    """Recompute the trained models' activations in the backward pass instead of storing them (less memory, ~30% more compute)."""
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """Under torchrun: 'ddp' keeps a whole copy of each trained model on every process (DistributedDataParallel);
    'fsdp' shards the trained models' weights, gradients and optimizer state over the processes (FSDP2), for models
    that do not fit on one device. Without torchrun (one process) it changes nothing."""

    def _validate_run_settings(self) -> None:
        from ppokit.lm.device import check_device_name

        check_device_name(self.device)
        for name in ("log_interval", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("checkpoint_interval", "torch_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or a positive integer, got {getattr(self, name)}")


@dataclass
class _SupervisedSettings:
    """Fields SFT and the reward model share."""

    model: str = ""
    """Starting model: a local folder or a hub id."""
    data: str = ""
    """JSONL file of training rows."""
    eval_data: str | None = None
    """JSONL of held-out rows; null: hold out eval_fraction of data."""
    eval_fraction: float = 0.1
    """Share of data held out for evaluation when eval_data is null."""
    batch_size: int = 32
    """Rows (pairs for the reward model) per optimizer step."""
    learning_rate: float = 5e-5
    """AdamW learning rate (linearly decayed to 0)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_eps: float = 1e-8
    """AdamW epsilon. A step moves a weight by about learning_rate * g / (|g| + adam_eps): a larger epsilon damps
    the steps of weights whose gradients are tiny (and whose sign is the least certain)."""
    max_grad_norm: float | None = 1.0
    """Global gradient-norm clip; null disables it."""
    max_length: int | None = None
    """Longest prompt + response in tokens; null: the model's context length. Longer rows are an error."""

    def validate(self) -> None:
        self._validate_run_settings()
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        _positive(self, ["learning_rate", "adam_eps"])
        _non_negative(self, ["weight_decay", "max_grad_norm"])
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")


def apply_run_settings(config) -> None:
    """Quiet transformers, thread count and seed: first thing in every trainer."""
    import torch

    from ppokit.lm.models import quiet_transformers

    quiet_transformers()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    torch.manual_seed(config.seed)


@dataclass
class SFTConfig(_SupervisedSettings, _RunSettings, ConfigBase):
    """Supervised fine-tuning: next-token loss on the completion tokens of (prompt, completion) rows."""

    epochs: int = 3
    """Passes over the training rows."""
    add_eos: bool = True
    """End every completion with the EOS token, so the model learns to stop."""


@dataclass
class RewardModelConfig(_SupervisedSettings, _RunSettings, ConfigBase):
    """A scalar reward model trained on (prompt, chosen, rejected) rows with the Bradley-Terry loss."""

    epochs: int = 1
    """Passes over the training pairs."""
    padding_side: Literal["right", "left"] = "right"
    """Where padding goes in a batch; the score is read at the last real token either way."""
    center_rewards_coef: float = 0.0
    """Weight of a penalty on the squared mean score, which keeps scores centered at 0."""

    def validate(self) -> None:
        _SupervisedSettings.validate(self)
        _non_negative(self, ["center_rewards_coef"])


@dataclass
class LMPPOConfig(ConfigBase, _RunSettings, UpdateFields):
    """PPO of a causal LM against a reward (model and/or function) with a per-token KL penalty to a reference.

    The update's fields (n_epochs ... normalize_advantage) are ppokit.core's UpdateFields, validated there;
    this class changes only their defaults."""

    # --- models and data ---
    policy: str = ""
    """The policy to train (usually the SFT model): a local folder or a hub id."""
    reference: str | None = None
    """Frozen reference for the KL penalty; null: a frozen copy of the policy (with LoRA: the policy with its adapter off)."""
    reward_model: str | None = None
    """Reward model folder or hub id (scalar head); null if only reward_function is used."""
    reward_function: list = field(default_factory=list)
    """Python reward functions (prompt, response) -> float as 'module:function' or 'file.py:function'; summed with the reward model."""
    value_model: str | None = None
    """Initial value model; null: the reward model if given, else the policy's body with a fresh scalar head."""
    prompts: str = ""
    """JSONL file of {"prompt"} rows."""
    lora: dict | None = None
    """Train a LoRA adapter instead of all weights: {r, alpha, dropout, target_modules}; null: full fine-tuning."""

    # --- rollout ---
    total_episodes: int = 10_000
    """Responses to generate over the whole run (prompts are cycled)."""
    batch_size: int = 64
    """Prompts per rollout (one PPO update each)."""
    max_new_tokens: int = 16
    """Longest response; a response that ends without EOS gets missing_eos_penalty."""
    temperature: float = 1.0
    """Sampling temperature (log-probs for PPO use the same temperature)."""
    top_k: int = 0
    """Sample from the k most likely tokens only; 0 disables."""
    top_p: float = 1.0
    """Nucleus sampling: the smallest set of tokens with this much probability; 1 disables."""
    truncate_prompts: bool = False
    """Keep only the last tokens of a prompt that does not fit the context with max_new_tokens; false: an error."""

    # --- memory ---
    generation_batch_size: int | None = None
    """Prompts sampled at once (bounds the KV cache of generation); null: batch_size."""
    forward_batch_size: int | None = None
    """Sequences per no-grad forward pass when scoring a rollout (reference, values, reward model); null: batch_size.
    The policy's own log-probs are scored in the update's micro-batches, so the first ratio of an update is exactly 1."""
    inference_dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Dtype of the reference and reward models, which never train; 'auto': that of the trained weights."""
    offload_reference: bool = False
    """Keep the reference model (and a reward model) on the CPU between uses, moving it to the device to score."""

    # --- reward shaping ---
    kl_estimator: Literal["k1", "k3"] = "k1"
    """Per-token KL estimator: k1 = log p - log ref, k3 = (r - 1) - log r with r = ref / p."""
    kl_coef: float = 0.05
    """Weight of the per-token KL penalty (initial value when adaptive_kl is true)."""
    adaptive_kl: bool = False
    """Adjust kl_coef toward kl_target (proportional controller)."""
    kl_target: float = 6.0
    """Target of the summed per-response KL for adaptive_kl."""
    kl_horizon: int = 10_000
    """Horizon of the adaptive controller, in episodes."""
    missing_eos_penalty: float | None = 1.0
    """Subtracted from the score of a response that does not end with EOS; null disables."""
    score_normalization: Literal["none", "batch", "running"] = "running"
    """Normalize scores before the KL penalty is added: by the batch's or a running mean and std."""
    score_clip: float | None = None
    """Clip (normalized) scores to [-score_clip, score_clip]; null disables."""

    # --- PPO update (ppokit.core's UpdateFields, with language-model defaults) ---
    n_epochs: int = 4
    minibatch_size: int = 16
    clip_range_vf: float | None = 0.2
    vf_coef: float = 0.1
    max_grad_norm: float | None = 1.0
    normalize_advantage: bool = False
    """Whiten advantages per minibatch as well (whiten_advantages already whitens over the whole rollout)."""
    grad_accum_steps: int = 1
    """Split each minibatch into this many micro-batches (same result, less memory)."""
    learning_rate: float = 1e-5
    """Adam learning rate of the policy and value model (constant)."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    gamma: float = 1.0
    """Discount over response tokens."""
    gae_lambda: float = 0.95
    """GAE lambda over response tokens."""
    whiten_advantages: bool = True
    """Whiten advantages over all real response tokens of the rollout."""

    def validate(self) -> None:
        self._validate_run_settings()
        self.validate_update_fields()
        for name in ("total_episodes", "batch_size", "max_new_tokens", "grad_accum_steps", "kl_horizon"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("generation_batch_size", "forward_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer or null (batch_size), got {getattr(self, name)}")
        _positive(self, ["learning_rate", "adam_eps", "temperature", "kl_target"])
        _non_negative(self, ["kl_coef", "missing_eos_penalty", "score_clip"])
        if self.top_k < 0:
            raise ConfigError(f"top_k must be 0 (disabled) or positive, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.minibatch_size > self.batch_size:
            raise ConfigError(f"minibatch_size={self.minibatch_size} is larger than batch_size={self.batch_size}; expected minibatch_size <= batch_size")
        if self.total_episodes < self.batch_size:
            raise ConfigError(f"total_episodes={self.total_episodes} is smaller than one rollout (batch_size={self.batch_size})")
        if any(not isinstance(f, str) or ":" not in f for f in self.reward_function):
            raise ConfigError(f"reward_function entries must be 'module:function' or 'file.py:function' strings, got {self.reward_function}")
        if self.lora is not None:
            unknown = set(self.lora) - {"r", "alpha", "dropout", "target_modules"}
            if unknown:
                raise ConfigError(f"lora has unknown keys {sorted(unknown)}; expected r, alpha, dropout, target_modules")
        if self.parallel == "fsdp" and self.lora is not None:
            raise ConfigError("parallel=fsdp does not support lora (merging the adapter needs the whole base model in one process); use parallel=ddp")
        if self.parallel == "fsdp" and self.offload_reference:
            raise ConfigError("parallel=fsdp does not support offload_reference (FSDP shards the reference over the processes instead); "
                              "set offload_reference=false")
