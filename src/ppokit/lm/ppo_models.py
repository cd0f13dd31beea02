"""The models of language-model PPO: the policy, its frozen reference, the value model and the reward, built,
placed and wrapped for data parallel once.

What is built follows from the config: a value model only for an estimator that needs values (``gae``),
a reference only when a KL to it is used (``kl_coef`` > 0 or the adaptive controller). With LoRA the
reference is the policy with its adapter switched off (no second copy). Trained models sit on the device
in the weights' dtype without dropout (so the update's first forward pass repeats the rollout's); frozen
ones in the inference dtype, on the device or, with ``offload_reference``, on the CPU until they score.
"""

from __future__ import annotations

import copy

import torch

from ppokit.errors import ConfigError
from ppokit.lm.config import LMPPOConfig
from ppokit.lm.models import disable_dropout, enable_gradient_checkpointing, load_causal_lm, load_scalar_model, load_tokenizer, resize_for_tokenizer
from ppokit.lm.parallel import Forwarding, data_parallel, ddp_wrappers, shard
from ppokit.lm.rewards import FunctionReward, RewardModelReward, SumReward, load_function
from ppokit.lm.scoring import response_logits, response_values


class PPOModels:
    """``policy``, ``reference`` (None: no reference, or the LoRA policy with its adapter off: ``uses_reference`` tells),
    ``value_model`` (None without an estimator that needs values), ``reward``; and what the computations run through:
    ``value_scores`` (per-token values as a forward()), ``policy_update`` and ``value_update`` (DDP wrappers, or the
    FSDP-sharded models themselves, under torchrun; the models in a world of one)."""

    def __init__(self, config: LMPPOConfig, tokenizer, policy, device: torch.device, precision, inference_dtype, world, sharded: bool,
                 reference=None, value_model=None, reward=None, forward_batch_size: int = 64):
        self.config, self.device, self.precision, self.inference_dtype = config, device, precision, inference_dtype
        self.world, self.sharded, self.tokenizer = world, sharded, tokenizer
        self.uses_reference = config.uses_reference
        resize_for_tokenizer(policy, tokenizer)
        self.reward = self._build_reward(reward)
        self.policy, self.reference = self._build_policy_and_reference(policy, reference)
        self.value_model = self._build_value_model(value_model) if config.uses_value_model else None
        self._place(forward_batch_size)
        self.value_scores = Forwarding(self.value_model, self.values) if self.value_model is not None else None
        # FSDP shards the policy itself (generation runs it directly); DDP wraps the one forward() of a micro-batch's logits
        self.policy_logits = self.policy if sharded else Forwarding(self.policy, self.logits)
        self.policy_update = data_parallel(self.policy_logits, world, config.parallel)
        self.value_update = data_parallel(self.value_scores, world, config.parallel) if self.value_scores is not None else None
        if sharded and self.reference is not None:  # a whole copy of the policy would not fit either
            shard(self.reference, world)

    @property
    def share_prompts(self) -> bool:
        """Whether forward passes run each distinct prompt once (``share_prompt_pass``): not where gradient checkpointing
        drops the key/value cache, nor with FSDP."""
        return self.config.share_prompt_pass and not self.config.gradient_checkpointing and not self.sharded

    def logits(self, model, sequence_ids: torch.Tensor, sequence_mask: torch.Tensor, prompt_width: int) -> torch.Tensor:
        """Response-token logits of ``model`` (the policy, or the module inside its DDP wrapper)."""
        return response_logits(model, sequence_ids, sequence_mask, prompt_width, self.precision, self.share_prompts)

    def values(self, model, sequence_ids: torch.Tensor, sequence_mask: torch.Tensor, prompt_width: int) -> torch.Tensor:
        """The value model's estimate before each response token, [B, R] (``value_scores`` runs this as its forward())."""
        with self.precision.autocast():
            return response_values(model, sequence_ids, sequence_mask, prompt_width, self.share_prompts)

    @property
    def trained(self) -> dict[str, torch.nn.Module]:
        """The trained models by the name their parameters carry in checkpoints."""
        return {"policy": self.policy} | ({"value": self.value_model} if self.value_model is not None else {})

    @property
    def ddp_modules(self) -> list[torch.nn.Module]:
        return ddp_wrappers(*[m for m in (self.policy_update, self.value_update) if m is not None])

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for model in self.trained.values() for p in model.parameters() if p.requires_grad]

    def training_mode(self, on: bool) -> None:
        """Train mode only where gradient checkpointing needs it (transformers checkpoints in train mode only);
        dropout is off, so both modes compute the same."""
        for model in self.trained.values():
            model.train(on and self.config.gradient_checkpointing)

    def trained_policy(self):
        """The policy as a plain causal LM (a LoRA adapter merged into a copy of the base)."""
        if hasattr(self.policy, "merge_and_unload"):
            return copy.deepcopy(self.policy).merge_and_unload()
        return self.policy

    # ------------------------------------------------------------------ building
    def _build_reward(self, reward):
        config = self.config
        if reward is not None:
            return reward if hasattr(reward, "score") else FunctionReward(reward)
        sources = []
        if config.reward_model:
            sources.append(RewardModelReward(load_scalar_model(config.reward_model, dtype=self.inference_dtype), load_tokenizer(config.reward_model)))
        sources += [FunctionReward(load_function(spec), name=spec) for spec in config.reward_function]
        if not sources:
            raise ConfigError("no reward: set reward_model and/or reward_function (e.g. reward_function=[my_module:score])")
        return sources[0] if len(sources) == 1 else SumReward(sources)

    def _build_policy_and_reference(self, policy, reference):
        config = self.config
        policy = policy.to(dtype=self.precision.weights_dtype)
        if config.lora is not None:
            from peft import LoraConfig, get_peft_model

            lora = config.lora
            policy = get_peft_model(policy, LoraConfig(r=lora.get("r", 8), lora_alpha=lora.get("alpha", 16), lora_dropout=lora.get("dropout", 0.0),
                                                       target_modules=lora.get("target_modules"), task_type="CAUSAL_LM"))
        if not self.uses_reference:
            return policy.eval(), None
        if reference is None and config.reference is not None:
            reference = load_causal_lm(config.reference, self.tokenizer, self.inference_dtype)
        if reference is None and config.lora is None:
            reference = copy.deepcopy(policy)
        if reference is not None:
            reference.eval().requires_grad_(False)
        return policy.eval(), reference  # None: the LoRA policy with its adapter switched off

    def _build_value_model(self, value_model):
        config = self.config
        if value_model is None:
            reward_model = self.reward.model if isinstance(self.reward, RewardModelReward) else None
            if config.value_model:
                value_model = load_scalar_model(config.value_model, self.tokenizer, self.precision.weights_dtype)
            elif reward_model is not None and next(reward_model.parameters()).dtype == self.precision.weights_dtype:
                value_model = copy.deepcopy(reward_model)  # the usual start: the reward model's weights
            elif config.reward_model:
                value_model = load_scalar_model(config.reward_model, self.tokenizer, self.precision.weights_dtype)
            elif reward_model is not None:
                value_model = copy.deepcopy(reward_model)
            else:
                value_model = self._value_model_from_policy()
        resize_for_tokenizer(value_model, self.tokenizer)
        return value_model.eval().requires_grad_(True)

    def _value_model_from_policy(self):
        from transformers import AutoModelForSequenceClassification

        base = self.policy.get_base_model() if hasattr(self.policy, "get_base_model") else self.policy
        config = copy.deepcopy(base.config)
        config.num_labels = 1
        value_model = AutoModelForSequenceClassification.from_config(config)
        body = getattr(value_model, value_model.base_model_prefix)
        body.load_state_dict(getattr(base, base.base_model_prefix).state_dict(), strict=False)
        return value_model

    def _place(self, forward_batch_size: int) -> None:
        frozen_home = torch.device("cpu") if self.config.offload_reference else self.device
        self.policy.to(self.device)  # its dtype was set before a LoRA adapter was added: peft keeps adapters in float32
        if self.value_model is not None:
            self.value_model.to(self.device, dtype=self.precision.weights_dtype)
        for model in self.trained.values():
            disable_dropout(model)
            if self.config.gradient_checkpointing:
                enable_gradient_checkpointing(model)
        if self.reference is not None:
            self.reference.to(frozen_home, dtype=self.inference_dtype)
        for model in self.reward.models:
            model.to(frozen_home, dtype=self.inference_dtype).eval().requires_grad_(False)
        if isinstance(self.reward, RewardModelReward):
            self.reward.batch_size = forward_batch_size
