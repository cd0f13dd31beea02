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
    log_interval: int = 0
    """Print a console summary every this many optimizer steps (PPO: updates), and after the last; 0: about 20 lines per run."""
    checkpoint_interval: int = 0
    """Save a checkpoint every this many optimizer steps (PPO: updates) for --resume; 0: none while training
    (one is written at the end, and SIGINT/SIGTERM always write one)."""
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
        if self.keep_checkpoints < 1:
            raise ConfigError(f"keep_checkpoints must be a positive integer, got {self.keep_checkpoints}")
        for name in ("checkpoint_interval", "torch_threads", "log_interval"):
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

    # --- algorithm ---
    advantage_estimator: str = "gae"
    """How advantages are estimated (see README, "Algorithms"): 'gae' (PPO with a value model), 'grpo', 'dr_grpo', 'rloo',
    'reinforce++', 'reinforce++-baseline'. Only 'gae' builds and trains a value model."""
    samples_per_prompt: int = 1
    """Responses sampled for each prompt of a batch (a group); the group estimators compare them and need 2 or more."""
    loss_aggregation: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = "token-mean"
    """How per-token losses become one: the mean over every token of the minibatch; the mean over sequences of each one's
    token mean (GRPO's original); or each sequence's token sum / max_new_tokens, averaged over sequences (Dr. GRPO)."""
    clip_range_low: float | None = None
    """Lower ratio clip: the ratio is kept above 1 - clip_range_low; null: clip_range."""
    clip_range_high: float | None = None
    """Upper ratio clip: the ratio is kept below 1 + clip_range_high; null: clip_range (DAPO's clip-higher sets it above)."""
    kl_penalty: Literal["auto", "reward", "loss"] = "auto"
    """Where the KL to the reference goes: 'reward' (-kl_coef x KL on every token's reward, PPO's form) or 'loss' (kl_coef x
    the k3 estimate as a term of the loss, GRPO's form); 'auto': 'loss' for the group estimators (grpo, dr_grpo, rloo,
    reinforce++-baseline), whose groups then compare scores alone, else 'reward'. kl_coef=0 uses no reference model at all."""
    dynamic_sampling: bool = False
    """Drop groups whose rewards are all equal (they carry no signal for a group estimator) and refill the batch with
    groups of new prompts, for at most dynamic_sampling_max_rounds more generation rounds."""
    dynamic_sampling_max_rounds: int = 3
    """Extra generation rounds per update with dynamic_sampling; a batch still short after them is filled with dropped groups."""

    # --- rollout ---
    total_episodes: int = 10_000
    """Responses to generate over the whole run (prompts are cycled)."""
    batch_size: int = 64
    """Responses (episodes) per rollout, one PPO update each: batch_size / samples_per_prompt prompts, each sampled
    samples_per_prompt times."""
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
    """Responses sampled at once (bounds the KV cache of generation); null: all of a process's batch."""
    forward_batch_size: int | None = None
    """Sequences per no-grad forward pass when scoring a rollout (reference, values, reward model); null: batch_size.
    The policy's own log-probs are scored in the update's micro-batches, so the first ratio of an update is exactly 1."""
    inference_dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Dtype of the reference and reward models, which never train; 'auto': that of the trained weights."""
    offload_reference: bool = False
    """Keep the reference model (and a reward model) on the CPU between uses, moving it to the device to score."""
    share_prompt_pass: bool = True
    """Run each distinct prompt of a forward pass through the model once and reuse its keys and values for every response
    to it (the samples_per_prompt responses of a group): the same log-probs up to rounding, for a fraction of the compute.
    Off by itself under gradient_checkpointing (which drops the cache) and parallel=fsdp."""

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
    score_normalization: Literal["auto", "none", "batch", "running"] = "auto"
    """Normalize scores before the KL penalty is added: by the batch's or a running mean and std; 'auto': running for
    'gae', none for the other estimators (which normalize within groups or whiten)."""
    score_clip: float | None = None
    """Clip (normalized) scores to [-score_clip, score_clip]; null disables."""

    # --- PPO update (ppokit.core's UpdateFields, with language-model defaults) ---
    n_epochs: int = 4
    minibatch_size: int = 16
    clip_range_vf: float | None = 0.2
    vf_coef: float = 0.1
    max_grad_norm: float | None = 1.0
    normalize_advantage: bool = False
    """Whiten advantages per minibatch as well (whiten_advantages, on by default for gae, whitens over the whole rollout)."""
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
    whiten_advantages: bool | None = None
    """Whiten advantages over all real response tokens of the rollout; null: true for 'gae', false for the others
    (reinforce++ whitens by its definition)."""

    # --- evaluation and what the policy writes ---
    eval_prompts: str | None = None
    """JSONL file of held-out prompts ({"prompt"} or {"messages"} rows), scored with the reward during training."""
    eval_interval: int = 0
    """Evaluate on eval_prompts every this many updates (and at the end); 0: at the end only."""
    eval_samples: int = 4
    """k: responses sampled per held-out prompt for eval/score_mean and eval/pass@k (besides the greedy one)."""
    eval_pass_threshold: float = 1.0
    """A sampled response passes when its reward is at least this (eval/pass@k: the share of prompts with a pass among k)."""
    eval_before_training: bool = False
    """Also evaluate before the first update (logged at step 0)."""
    log_completions: int = 0
    """Write this many (prompt, response, reward, advantage) rows per update to completions.jsonl and TensorBoard's text tab."""

    @property
    def estimator(self):
        """The registered advantage estimator (``ppokit.core.estimators``)."""
        from ppokit.core.estimators import ADVANTAGE_ESTIMATORS

        return ADVANTAGE_ESTIMATORS[self.advantage_estimator]

    @property
    def uses_value_model(self) -> bool:
        return self.estimator.needs_values

    @property
    def uses_reference(self) -> bool:
        """kl_coef=0 (and no adaptive controller to raise it) needs no reference model: none is built or run."""
        return self.kl_coef > 0 or self.adaptive_kl

    @property
    def resolved_score_normalization(self) -> str:
        if self.score_normalization != "auto":
            return self.score_normalization
        return "running" if self.estimator.needs_values else "none"

    @property
    def resolved_whiten_advantages(self) -> bool:
        return self.estimator.needs_values if self.whiten_advantages is None else self.whiten_advantages

    @property
    def kl_in_reward(self) -> bool:
        """Whether the KL penalty is part of the per-token rewards (else a term of the loss)."""
        if self.kl_penalty == "auto":
            return not self.estimator.needs_groups
        return self.kl_penalty == "reward"

    @property
    def prompts_per_batch(self) -> int:
        return self.batch_size // self.samples_per_prompt

    def _validate_algorithm(self) -> None:
        from ppokit.core.estimators import ADVANTAGE_ESTIMATORS

        if self.advantage_estimator not in ADVANTAGE_ESTIMATORS:
            raise ConfigError(f"advantage_estimator must be one of {sorted(ADVANTAGE_ESTIMATORS)}, got {self.advantage_estimator!r}")
        if self.samples_per_prompt < 1:
            raise ConfigError(f"samples_per_prompt must be a positive integer, got {self.samples_per_prompt}")
        if self.estimator.needs_groups and self.samples_per_prompt < 2:
            raise ConfigError(f"advantage_estimator={self.advantage_estimator} compares the responses to one prompt: set samples_per_prompt "
                              f"to 2 or more (got {self.samples_per_prompt})")
        if self.batch_size % self.samples_per_prompt:
            raise ConfigError(f"batch_size={self.batch_size} is not a multiple of samples_per_prompt={self.samples_per_prompt}; batch_size counts "
                              f"responses, samples_per_prompt of them per prompt")
        if self.dynamic_sampling and not self.estimator.needs_groups:
            raise ConfigError(f"dynamic_sampling drops groups of equal rewards, which only a group estimator cannot learn from; "
                              f"advantage_estimator={self.advantage_estimator} is not one (use grpo, dr_grpo, rloo or reinforce++-baseline)")
        if not self.kl_in_reward and self.adaptive_kl:
            raise ConfigError(f"adaptive_kl steers the KL penalty in the reward; with the KL in the loss (kl_penalty={self.kl_penalty}, "
                              f"advantage_estimator={self.advantage_estimator}) set adaptive_kl=false, or kl_penalty=reward")
        for name in ("clip_range_low", "clip_range_high"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number or null (clip_range), got {value}")
        if self.dynamic_sampling_max_rounds < 0:
            raise ConfigError(f"dynamic_sampling_max_rounds must be 0 or a positive integer, got {self.dynamic_sampling_max_rounds}")
        for name in ("eval_interval", "log_completions"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or a positive integer, got {getattr(self, name)}")
        if self.eval_samples < 0:
            raise ConfigError(f"eval_samples must be 0 (greedy only) or a positive integer, got {self.eval_samples}")

    def update_settings(self, **overrides):
        """The update's settings: the clip range pair, the loss aggregation and the KL term of kl_penalty=loss."""
        settings = {"clip_range": self.clip_range_low or self.clip_range, "clip_range_high": self.clip_range_high or self.clip_range,
                    "loss_aggregation": self.loss_aggregation, "aggregation_horizon": self.max_new_tokens,
                    "kl_loss_coef": 0.0 if self.kl_in_reward else self.kl_coef}
        return super().update_settings(**(settings | overrides))

    def validate(self) -> None:
        self._validate_run_settings()
        self.validate_update_fields()
        self._validate_algorithm()
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
            if self.lora.get("dropout", 0.0):
                raise ConfigError(f"lora dropout must be 0, got {self.lora['dropout']}: ppokit switches dropout off in the trained models, "
                                  "so that the first PPO ratio of every update is exactly 1")
        if self.parallel == "fsdp" and self.lora is not None:
            raise ConfigError("parallel=fsdp does not support lora (merging the adapter needs the whole base model in one process); use parallel=ddp")
        if self.parallel == "fsdp" and self.offload_reference:
            raise ConfigError("parallel=fsdp does not support offload_reference (FSDP shards the reference over the processes instead); "
                              "set offload_reference=false")
