"""PPO for causal language models on ppokit.core.

One rollout: sample responses to a batch of prompts, cut them at EOS, score each finished text once
(reward model and/or functions), and turn that score into per-token rewards: minus kl_coef times the
per-token KL to the reference at every token, plus the score on the last real token. Advantages are
the core's GAE over the response tokens (time-major, the episode ends at the last real token), and
the update is the core's ppo_update with this module's evaluate() giving new log-probs, entropies
and values.

The update's first minibatch repeats the rollout's computation exactly, so its ratio is exactly 1:
dropout is off in the trained models, and the policy's rollout log-probs are scored in the update's
own first-epoch micro-batches (a row's result may depend on the shape of the batch it sits in).
Everything lives on ``config.device``; log-probs, values and losses are float32 under any precision.

Data parallel under torchrun (``ppokit.lm.parallel``): every rank draws the same global batch of
prompts and rolls out its slice of it; score normalization, advantage whitening, the KL controller's
mean KL and the logged statistics are taken over all ranks' responses; the update runs the policy and
value model through DDP (or FSDP2 with ``parallel: fsdp``), and rank 0 alone writes.
"""

from __future__ import annotations

import copy
import random
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

import torch

from ppokit.core.advantages import gae, next_values_from
from ppokit.core.batch import micro_batch_slices, minibatch_indices
from ppokit.core.losses import kl_k1, kl_k3, masked_whiten_over_ranks
from ppokit.core.metrics import explained_variance, explained_variance_from_sums, explained_variance_sums
from ppokit.core.running_stats import RunningMeanStd
from ppokit.core.schedules import AdaptiveKLController, FixedKLController
from ppokit.core.update import ppo_update
from ppokit.distributed import check_divisible, current_world
from ppokit.errors import CheckpointError, ConfigError
from ppokit.lm.checkpoints import (
    load_training_state,
    python_random_state,
    rank_array,
    restore_training_state,
    resume_overrides,
    save_training_state,
    set_python_random_state,
)
from ppokit.lm.config import LMPPOConfig, apply_run_settings
from ppokit.lm.data import load_located_rows, prompt_of
from ppokit.lm.device import placed, rank_device, resolve_device, write_run_info
from ppokit.lm.encoding import encode_prompt
from ppokit.lm.generation import GenerationSettings, sample_responses
from ppokit.lm.models import (
    context_length,
    disable_dropout,
    enable_gradient_checkpointing,
    load_causal_lm,
    load_scalar_model,
    load_tokenizer,
    resize_for_tokenizer,
    save_pretrained,
)
from ppokit.lm.parallel import (
    Forwarding,
    data_parallel,
    ddp_wrappers,
    gather_batch,
    rank_seed,
    rank_share,
    reshard,
    save_sharded,
    shard,
)
from ppokit.lm.precision import Precision
from ppokit.lm.reward_model import token_scores
from ppokit.lm.rewards import FunctionReward, ResponseBatch, RewardModelReward, SumReward, load_function
from ppokit.lm.sequences import causal_inputs, last_token_index, pad_sequences, token_entropy, token_logprobs, truncate_at_eos
from ppokit.run_logging import MetricsLogger
from ppokit.signals import StopRequest

KL_ESTIMATORS = {"k1": kl_k1, "k3": kl_k3}
COLUMNS = ["step", "episodes", "time_elapsed", "charts/episodes_per_second", "charts/tokens_per_second", "env/score", "env/score_normalized",
           "env/gold", "env/kl", "env/kl_coef", "env/response_length", "env/eos_fraction", "env/reward_total",
           "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac",
           "losses/explained_variance", "losses/grad_norm", "losses/first_ratio_deviation"]


def token_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, gae_lambda: float):
    """Advantages and returns [B, R] of response tokens: the core's GAE, time-major, each response one
    episode that ends (terminated, no bootstrap) at its last real token. Padding gets 0."""
    mask = mask.float()
    rewards_t, values_t = (rewards * mask).T, (values * mask).T
    columns = torch.arange(mask.shape[1], device=mask.device)
    after_last = columns.unsqueeze(1) >= last_token_index(mask).unsqueeze(0)  # [R, B]
    advantages, returns = gae(rewards_t, values_t, next_values_from(values_t, values_t.new_zeros(mask.shape[0])),
                              terminated=after_last, dones=after_last, gamma=gamma, gae_lambda=gae_lambda)
    return advantages.T * mask, returns.T * mask


def per_token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """-kl_coef * KL at every real token, plus the sequence's score on its last real token."""
    rewards = -kl_coef * kl * mask
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last_token_index(mask)] += scores
    return rewards


class LMPPOTrainer:
    """PPO of ``policy`` against ``reward``. Everything not given is loaded from the paths in ``config``.

    ``reward``: a source with ``score(ResponseBatch)`` (RewardModelReward, FunctionReward, SumReward) or
    a plain function (prompt, response) -> float. ``prompts``: strings or message lists (chat).
    ``gold_reward``: an optional function that is only logged (env/gold), for demos where the true
    reward is known. Resume a run with ``LMPPOTrainer.resume(run_dir)``.
    """

    def __init__(self, config: LMPPOConfig, run_dir: str | Path | None = None, policy=None, tokenizer=None, reference=None,
                 value_model=None, reward=None, prompts: list | None = None, gold_reward=None,
                 progress: bool | None = None, verbose: bool = True):
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        apply_run_settings(config)
        device = resolve_device(config.device)
        self.world = current_world(device.type)  # data parallel under torchrun (ppokit.distributed)
        self.device = rank_device(config.device, device, self.world)
        self.world.check_same("the config", config.to_dict())
        check_divisible({"batch_size": config.batch_size, "minibatch_size": config.minibatch_size}, self.world)
        self.sharded = self.world.distributed and config.parallel == "fsdp"
        self.precision = Precision.resolve(config.precision, self.device)
        self.inference_dtype = self.precision.inference_dtype(config.inference_dtype)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.policy)
        policy = policy if policy is not None else load_causal_lm(config.policy, self.tokenizer, self.precision.weights_dtype)
        resize_for_tokenizer(policy, self.tokenizer)
        self.reward = self._build_reward(reward)
        self.policy, self.reference = self._build_policy_and_reference(policy, reference)
        self.value_model = self._build_value_model(value_model)
        self._place_models()
        self._data_parallel()
        located = [(f"prompt {i + 1}", p) for i, p in enumerate(prompts)] if prompts is not None else \
            [(where, prompt_of(row)) for where, row in load_located_rows(config.prompts, "prompt")]
        self.prompts = [prompt for _, prompt in located]
        self.prompt_ids = self._encode_prompts(located)
        self.gold_reward = gold_reward
        self.kl_estimator = KL_ESTIMATORS[config.kl_estimator]
        self.kl_controller = (AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon) if config.adaptive_kl
                              else FixedKLController(config.kl_coef))
        self.score_moments = RunningMeanStd.fresh(device=self.device)
        self.generation = GenerationSettings(config.max_new_tokens, config.temperature, config.top_k, config.top_p)
        self.parameters = [p for p in list(self.policy.parameters()) + list(self.value_model.parameters()) if p.requires_grad]
        # fused: one kernel for all parameters; with small models the per-tensor optimizer overhead is ~5% of an update
        self.optimizer = torch.optim.Adam(self.parameters, lr=config.learning_rate, eps=config.adam_eps, fused=self.device.type in ("cpu", "cuda"))
        self.grad_scaler = self.precision.grad_scaler()
        # data parallel: each rank takes its share of every minibatch
        self.settings = config.update_settings(grad_accum_steps=config.grad_accum_steps, minibatch_size=config.minibatch_size // self.world.size)
        self.order_rng = random.Random(config.seed)  # the global prompt order: the same on every rank
        self.prompt_queue: list[int] = []  # prompt indices still to visit in the current shuffled pass
        self.minibatch_generator = torch.Generator().manual_seed(rank_seed(config.seed, self.world))
        if self.world.rank > 0:  # the models are built (alike on every rank): sample with a stream of this rank's own
            torch.manual_seed(rank_seed(config.seed, self.world))
        self.num_updates = self.episodes = 0
        self.tokens = 0.0  # response tokens generated over the run
        self.elapsed_before = 0.0  # seconds trained before a resume
        self.resumed_from: Path | None = None
        self.interrupted: str | None = None
        self.history: list[dict[str, float]] = []
        self.progress, self.verbose = progress, verbose

    # ------------------------------------------------------------------ set-up
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

    def _place_models(self) -> None:
        """Trained models on the device in the weights' dtype, without dropout (the first ratio stays 1);
        frozen ones in the inference dtype, on the device or (offload_reference) on the CPU until used."""
        frozen_home = torch.device("cpu") if self.config.offload_reference else self.device
        self.policy.to(self.device)  # its dtype was set before a LoRA adapter was added: peft keeps adapters in float32
        self.value_model.to(self.device, dtype=self.precision.weights_dtype)
        for model in (self.policy, self.value_model):
            disable_dropout(model)
            if self.config.gradient_checkpointing:
                enable_gradient_checkpointing(model)
        if self.reference is not None:
            self.reference.to(frozen_home, dtype=self.inference_dtype)
        for model in self.reward.models:
            model.to(frozen_home, dtype=self.inference_dtype).eval().requires_grad_(False)
        if isinstance(self.reward, RewardModelReward):
            self.reward.batch_size = self.forward_batch_size

    def _data_parallel(self) -> None:
        """The modules the computations run through. ``value_scores``: the value model's per-token values as a
        forward(); ``policy_update`` and ``value_update``: what the update's gradient steps run, DDP wrappers
        (or the FSDP-sharded models themselves) under torchrun; in a world of one the models."""
        self.value_scores = Forwarding(self.value_model, token_scores)
        self.policy_update = data_parallel(self.policy, self.world, self.config.parallel)
        self.value_update = data_parallel(self.value_scores, self.world, self.config.parallel)
        if self.sharded and self.reference is not None:  # a whole copy of the policy would not fit either
            shard(self.reference, self.world)

    @property
    def forward_batch_size(self) -> int:
        return self.config.forward_batch_size or self.config.batch_size

    def _encode_prompts(self, located: list[tuple[str, str | list]]) -> list[list[int]]:
        if not located:
            raise ConfigError("no prompts: the prompt dataset is empty")
        limit = context_length(self.policy)
        room = None if limit is None else limit - self.config.max_new_tokens
        encoded = []
        for where, prompt in located:
            ids = encode_prompt(self.tokenizer, prompt, where)
            if room is not None and len(ids) > room:
                if not self.config.truncate_prompts or room < 1:
                    raise ConfigError(f"{where} is {len(ids)} tokens; with max_new_tokens={self.config.max_new_tokens} it does not fit "
                                      f"the model's context of {limit} tokens (set truncate_prompts=true to keep its last {room} tokens)")
                ids = ids[-room:]
            encoded.append(ids)
        return encoded

    def _training_mode(self, on: bool) -> None:
        """Train mode only where gradient checkpointing needs it (transformers checkpoints in train mode only);
        dropout is off, so both modes compute the same."""
        for model in (self.policy, self.value_model):
            model.train(on and self.config.gradient_checkpointing)

    # ------------------------------------------------------------------ rollout
    def _forward(self, model, sequence_ids, sequence_mask, prompt_width):
        """Response-token logits [B, R, V]: the logits at position t predict token t + 1."""
        # only the response positions need logits: with a large vocabulary the LM head is most of the cost
        keep = sequence_ids.shape[1] - prompt_width + 1
        with self.precision.autocast():
            logits = model(input_ids=sequence_ids, logits_to_keep=keep, use_cache=False, **causal_inputs(sequence_mask)).logits
        return logits[:, -keep:-1]

    def _logprobs(self, model, sampled: dict, rows: torch.Tensor) -> torch.Tensor:
        logits = self._forward(model, sampled["sequence_ids"][rows], sampled["sequence_mask"][rows], sampled["prompt_width"])
        return token_logprobs(logits, sampled["response_ids"][rows], self.config.temperature)

    def _values(self, sequence_ids, sequence_mask, prompt_width, value_scores=None) -> torch.Tensor:
        with self.precision.autocast():
            return (value_scores or self.value_scores)(sequence_ids, sequence_mask)[:, prompt_width - 1 : -1]

    def _in_chunks(self, function, size: int) -> torch.Tensor:
        """function(rows) over consecutive row chunks of forward_batch_size, concatenated."""
        rows = torch.arange(size, device=self.device)
        return torch.cat([function(rows[start : start + self.forward_batch_size]) for start in range(0, size, self.forward_batch_size)])

    def _sample(self, prompts: list, prompt_tokens: list[list[int]], settings: GenerationSettings) -> dict:
        """Generate (generation_batch_size prompts at a time) and cut at EOS."""
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        prompt_ids, prompt_mask = pad_sequences(prompt_tokens, pad, side="left", device=self.device)
        chunk = self.config.generation_batch_size or len(prompt_tokens)
        with self.precision.autocast():
            parts = [sample_responses(self.policy, prompt_ids[start : start + chunk], prompt_mask[start : start + chunk], settings, eos, pad,
                                      synced=self.sharded) for start in range(0, len(prompt_tokens), chunk)]
        width = max(part.shape[1] for part in parts)  # chunks whose responses all ended early are shorter
        raw = torch.cat([torch.nn.functional.pad(part, (0, width - part.shape[1]), value=pad) for part in parts])
        responses, response_mask, has_eos = truncate_at_eos(raw, eos, pad)
        texts = [self.tokenizer.decode(r[m.bool()].tolist(), skip_special_tokens=True) for r, m in zip(responses.cpu(), response_mask.cpu())]
        return {"prompts": prompts, "responses": texts, "has_eos": has_eos, "prompt_width": prompt_ids.shape[1],
                "sequence_ids": torch.cat([prompt_ids, responses], 1), "sequence_mask": torch.cat([prompt_mask, response_mask], 1),
                "response_ids": responses, "mask": response_mask.float()}

    def _score(self, sampled: dict, policy_layout: list[torch.Tensor] | None) -> dict:
        """Log-probs of the policy (in ``policy_layout``'s row groups; None: forward_batch_size chunks)
        and the reference, and the reward of each finished text."""
        count = len(sampled["prompts"])
        self._training_mode(True)  # the mode of the update, which must repeat this computation
        try:
            if policy_layout is None:
                logprobs = self._in_chunks(lambda rows: self._logprobs(self.policy, sampled, rows), count)
            else:
                logprobs = torch.empty_like(sampled["mask"])
                for rows in policy_layout:
                    logprobs[rows] = self._logprobs(self.policy, sampled, rows)
        finally:
            self._training_mode(False)
        ref_logprobs = self._reference_logprobs(sampled)
        batch = ResponseBatch(sampled["prompts"], sampled["responses"], sampled["sequence_ids"], sampled["sequence_mask"], self.tokenizer)
        with ExitStack() as stack:
            for model in self.reward.models:
                stack.enter_context(placed(model, self.device, self.config.offload_reference))
            with self.precision.autocast():
                scores = self.reward.score(batch).float()
        return {"logprobs": logprobs, "ref_logprobs": ref_logprobs, "raw_scores": scores}

    def _reference_logprobs(self, sampled: dict) -> torch.Tensor:
        """Log-probs of the sampled responses under the reference (with LoRA: the policy with its adapter off)."""
        count = sampled["sequence_ids"].shape[0]
        if self.reference is None:
            with self.policy.disable_adapter():
                return self._in_chunks(lambda rows: self._logprobs(self.policy, sampled, rows), count)
        with placed(self.reference, self.device, self.config.offload_reference):
            return self._in_chunks(lambda rows: self._logprobs(self.reference, sampled, rows), count)

    def _first_epoch_layout(self, count: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The update's first-epoch permutation (drawn now, from the minibatch generator) and its micro-batches."""
        permutation = torch.randperm(count, generator=self.minibatch_generator)
        layout = [minibatch[part].to(self.device) for minibatch in minibatch_indices(count, self.settings.minibatch_size, permutation=permutation)
                  for part in micro_batch_slices(len(minibatch), self.config.grad_accum_steps)]
        return permutation, layout

    @torch.no_grad()
    def rollout(self, prompt_indices: list[int]) -> dict:
        """Sample, score and shape rewards for one batch of prompts."""
        sampled = self._sample([self.prompts[i] for i in prompt_indices], [self.prompt_ids[i] for i in prompt_indices], self.generation)
        permutation, layout = self._first_epoch_layout(len(prompt_indices))
        scored = self._score(sampled, layout)
        width, mask, logprobs = sampled["prompt_width"], sampled["mask"], scored["logprobs"]
        values = self._in_chunks(lambda rows: self._values(sampled["sequence_ids"][rows], sampled["sequence_mask"][rows], width), len(prompt_indices))
        scores = scored["raw_scores"].clone()
        if self.config.missing_eos_penalty is not None:
            scores[~sampled["has_eos"]] -= self.config.missing_eos_penalty
        scores = self._normalize_scores(scores)
        kl = self.kl_estimator(logprobs, scored["ref_logprobs"]) * mask
        rewards = per_token_rewards(scores, kl, mask, self.kl_controller.value)
        advantages, returns = token_advantages(rewards, values, mask, self.config.gamma, self.config.gae_lambda)
        if self.config.whiten_advantages:  # over every rank's response tokens
            advantages = masked_whiten_over_ranks(advantages, mask, self.world) * mask
        reshard(self.policy, self.value_scores, self.reference)  # (FSDP: after forward passes without a backward)
        return {
            **{k: sampled[k] for k in ("prompts", "responses", "has_eos", "prompt_width")},
            "raw_scores": scored["raw_scores"], "scores": scores, "rewards": rewards, "first_epoch_order": permutation,
            "kl_sum": kl_k1(logprobs, scored["ref_logprobs"]).mul(mask).sum(1),
            "samples": {"sequence_ids": sampled["sequence_ids"], "sequence_mask": sampled["sequence_mask"], "responses": sampled["response_ids"],
                        "mask": mask, "logprobs": logprobs, "values": values * mask, "advantages": advantages, "returns": returns},
        }

    def _normalize_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """By the statistics of the global batch: every rank's scores, in rank order."""
        mode = self.config.score_normalization
        every_rank = gather_batch(scores, self.world) if mode != "none" else scores
        if mode == "batch" and every_rank.numel() > 1:
            scores = (scores - every_rank.mean()) / (every_rank.std() + 1e-8)
        elif mode == "running":
            self.score_moments.update(every_rank)
            mean, std = self.score_moments.mean, torch.sqrt(self.score_moments.var + 1e-8)
            scores = (scores - mean.to(scores.dtype)) / std.to(scores.dtype)
        if self.config.score_clip is not None:
            scores = scores.clamp(-self.config.score_clip, self.config.score_clip)
        return scores

    # ------------------------------------------------------------------ update
    def update(self, batch: dict) -> dict[str, float]:
        """One ppokit.core PPO update on a rollout's samples (sequences are the sample axis)."""
        width = batch["prompt_width"]

        def evaluate(minibatch):
            logits = self._forward(self.policy_update, minibatch["sequence_ids"], minibatch["sequence_mask"], width)
            logprob = token_logprobs(logits, minibatch["responses"], self.config.temperature)
            with nullcontext() if self.config.ent_coef else torch.no_grad():  # without a bonus entropy is only reported
                entropy = token_entropy(logits, self.config.temperature)
            return logprob, entropy, self._values(minibatch["sequence_ids"], minibatch["sequence_mask"], width, self.value_update)

        first_epoch = batch["first_epoch_order"]
        self._training_mode(True)
        try:
            return ppo_update(evaluate, self.optimizer, self.parameters, batch["samples"], self.settings, generator=self.minibatch_generator,
                              order=lambda epoch: first_epoch if epoch == 0 else None, grad_scaler=self.grad_scaler, world=self.world,
                              ddp_modules=ddp_wrappers(self.policy_update, self.value_update))
        finally:
            self._training_mode(False)
            reshard(self.policy, self.value_scores)  # (FSDP: a target-KL stop may leave a forward without its backward)

    # ------------------------------------------------------------------ loop
    def train(self) -> dict[str, float]:
        """Train until total_episodes (continuing a resumed run). After SIGINT/SIGTERM the run stops at
        the next update boundary with a checkpoint and ``interrupted`` names the signal."""
        config = self.config
        main = self.world.is_main  # data parallel: the other ranks write and show nothing
        total_updates = config.total_episodes // config.batch_size
        if self.finished:  # resumed from the checkpoint at its end: the run's outputs stay as they are
            if main and self.verbose:
                print(f"ppokit: this run has finished ({self.num_updates} updates, {self.episodes} episodes); nothing to train. "
                      "To train further, resume with total_episodes=N (the new total)")
            return {"updates": self.num_updates, "episodes": self.episodes, "seconds": 0.0, "interrupted": None, "finished": True,
                    "final_score": float("nan")}
        if self.run_dir is not None and main:
            write_run_info(self.run_dir, "lm_ppo", self.device, self.precision.name)
        logger = MetricsLogger(self.run_dir if main else None, COLUMNS, total=total_updates * config.batch_size, unit="episode",
                               tensorboard=config.tensorboard, progress=self.progress if main else False, console=self.verbose and main,
                               log_interval=config.log_interval, resume_after_step=self.num_updates if self.resumed_from is not None else None,
                               initial=self.episodes)
        started = time.perf_counter()
        elapsed = lambda: self.elapsed_before + time.perf_counter() - started  # noqa: E731
        try:
            with StopRequest() as stop, self.world.failing():
                while self.num_updates < total_updates:
                    indices = self._next_prompts()  # the global batch; this rank rolls out its slice
                    batch = self.rollout(rank_share(indices, self.world))
                    stats = self.update(batch)
                    self.num_updates += 1
                    self.episodes += len(indices)
                    row, mean_kl = self._row(batch, stats, elapsed())
                    self.kl_controller.update(mean_kl, len(indices))
                    logger.log(self.num_updates, self.episodes, row, ["env/score", "env/gold", "env/kl", "losses/approx_kl"])
                    signal_name = self.world.agree_on_signal(stop.signal_name)
                    due = config.checkpoint_interval and self.num_updates % config.checkpoint_interval == 0
                    if self.run_dir is not None and (due or signal_name):
                        self.save_checkpoint(elapsed())
                    if signal_name:
                        self.interrupted = signal_name
                        logger.message(f"{signal_name} received: stopped after update {self.num_updates}" +
                                       (f"; checkpoint written, continue with: ppokit lm ppo --resume {self.run_dir}" if self.run_dir else ""))
                        break
        finally:
            logger.close()
            self.history = logger.rows
        if self.run_dir is not None and not self.interrupted:
            self.save_checkpoint(elapsed())
            self.save(self.run_dir / "policy")
        return {"updates": self.num_updates, "episodes": self.episodes, "seconds": elapsed(), "interrupted": self.interrupted,
                "final_score": self.history[-1]["env/score"] if self.history else float("nan")}

    @property
    def finished(self) -> bool:
        """Whether a resumed run has already made every update of total_episodes."""
        return self.resumed_from is not None and self.num_updates >= self.config.total_episodes // self.config.batch_size

    def _next_prompts(self) -> list[int]:
        """The next batch of prompt indices: shuffled passes over the prompts, one after another."""
        while len(self.prompt_queue) < self.config.batch_size:
            order = list(range(len(self.prompts)))
            self.order_rng.shuffle(order)
            self.prompt_queue += order
        indices, self.prompt_queue = self.prompt_queue[: self.config.batch_size], self.prompt_queue[self.config.batch_size :]
        return indices

    def _row(self, batch: dict, stats: dict[str, float], elapsed: float) -> tuple[dict[str, float], float]:
        """The logged statistics of the update, over every rank's responses, and the mean summed KL for the KL controller."""
        samples = batch["samples"]
        mask = samples["mask"]
        gold = [self.gold_reward(p, r) for p, r in zip(batch["prompts"], batch["responses"])] if self.gold_reward is not None else None
        columns = [batch["raw_scores"], batch["scores"], batch["has_eos"], batch["rewards"].sum(1), mask.sum(1), batch["kl_sum"],
                   torch.tensor(gold or [0.0] * len(batch["prompts"]))]
        per_response = torch.stack([column.to(mask.device, torch.float64) for column in columns], 1)
        raw_score, score, eos, reward_total, tokens, kl, gold_total = gather_batch(per_response, self.world).sum(0).tolist()
        count = len(batch["prompts"]) * self.world.size
        if self.world.distributed:
            explained = explained_variance_from_sums(self.world.sum(explained_variance_sums(samples["values"], samples["returns"], mask)))
        else:
            explained = explained_variance(samples["values"], samples["returns"], mask)
        self.tokens += tokens
        row = {"episodes": self.episodes, "time_elapsed": elapsed, "charts/episodes_per_second": self.episodes / max(elapsed, 1e-9),
               "charts/tokens_per_second": self.tokens / max(elapsed, 1e-9),
               "env/score": raw_score / count, "env/score_normalized": score / count,
               "env/kl": kl / count, "env/kl_coef": self.kl_controller.value, "env/response_length": tokens / count,
               "env/eos_fraction": eos / count, "env/reward_total": reward_total / count, "losses/explained_variance": explained}
        if gold is not None:
            row["env/gold"] = gold_total / count
        for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "grad_norm", "first_ratio_deviation"):
            if name in stats:
                row[f"losses/{name}"] = stats[name]
        return row, kl / count

    # ------------------------------------------------------------------ evaluation and saving
    @torch.no_grad()
    def evaluate(self, prompts: list, gold_reward=None, greedy: bool = False, seed: int = 12345) -> dict[str, float]:
        """Mean reward score, gold reward and summed KL to the reference of responses to ``prompts``
        (the random state of training is left as it was)."""
        kind = self.device.type
        with torch.random.fork_rng(devices=[self.device.index or 0] if kind != "cpu" else [], device_type=kind if kind != "cpu" else "cuda"):
            torch.manual_seed(seed)
            settings = GenerationSettings(self.generation.max_new_tokens, self.generation.temperature, self.generation.top_k, self.generation.top_p, greedy)
            sampled = self._sample(prompts, self._encode_prompts([(f"prompt {i + 1}", p) for i, p in enumerate(prompts)]), settings)
            scored = self._score(sampled, policy_layout=None)
            reshard(self.policy, self.reference)  # (FSDP: after forward passes without a backward)
            kl = kl_k1(scored["logprobs"], scored["ref_logprobs"]).mul(sampled["mask"]).sum(1)
            result = {"score": float(scored["raw_scores"].mean()), "kl": float(kl.mean()), "eos_fraction": float(sampled["has_eos"].float().mean()),
                      "samples": list(zip(prompts[:5], sampled["responses"][:5]))}
            if gold_reward is not None:
                result["gold"] = sum(gold_reward(p, r) for p, r in zip(prompts, sampled["responses"])) / len(prompts)
            return result

    def trained_policy(self):
        """The policy as a plain causal LM (a LoRA adapter merged into a copy of the base)."""
        if hasattr(self.policy, "merge_and_unload"):
            return copy.deepcopy(self.policy).merge_and_unload()
        return self.policy

    def save(self, directory: str | Path) -> Path:
        """The policy (LoRA merged) and tokenizer, loadable with load_causal_lm; the value model beside it.

        Data parallel, every rank calls this (FSDP gathers the shards) and rank 0 alone writes."""
        directory = Path(directory)
        if self.sharded:
            save_sharded(self.policy, self.tokenizer, directory, self.world)
            save_sharded(self.value_model, self.tokenizer, directory / "value_model", self.world)
        elif self.world.is_main:
            save_pretrained(self.trained_policy(), self.tokenizer, directory)
            save_pretrained(self.value_model, self.tokenizer, directory / "value_model")
        return directory

    def save_checkpoint(self, elapsed: float = 0.0) -> Path | None:
        """Every rank calls this; rank 0 writes (with every rank's random streams) and returns the folder, the others None."""
        state = {"trainer": "lm_ppo", "config": self.config.to_dict(), "device": str(self.device), "precision": self.precision.name,
                 "num_updates": self.num_updates, "episodes": self.episodes, "tokens": self.tokens,
                 "elapsed_seconds": elapsed, "kl_controller": self.kl_controller.state_dict(),
                 "order_rng": python_random_state(self.order_rng), "prompt_queue": self.prompt_queue}
        arrays = {f"score_moments.{name}": value for name, value in self.score_moments.state_dict().items()}
        return save_training_state(self.run_dir, self.num_updates, {"policy": self.policy, "value": self.value_model}, self.optimizer, state,
                                   self.config.keep_checkpoints, self.device, arrays, self.grad_scaler, self.world,
                                   rank_arrays={"rng.minibatch_order": self.minibatch_generator.get_state()})

    @classmethod
    def resume(cls, run_dir: str | Path, overrides: dict | None = None, **kwargs) -> LMPPOTrainer:
        """The trainer of ``run_dir``'s newest checkpoint, ready to continue with ``train()``.

        The config is the checkpoint's (``overrides`` may change ``device`` only); models, rewards
        and prompts given in Python to the first run must be given again through ``kwargs``.
        """
        arrays, meta, checkpoint_dir = load_training_state(run_dir, "lm_ppo")
        config = LMPPOConfig.from_dict({**meta["config"], **resume_overrides(overrides, meta["config"], "total_episodes")},
                                       source=f"checkpoint {checkpoint_dir} config")
        trainer = cls(config, run_dir=checkpoint_dir.parent.parent, **kwargs)
        source = f"checkpoint {str(checkpoint_dir)!r}"
        restore_training_state(arrays, meta, source, {"policy": trainer.policy, "value": trainer.value_model}, trainer.optimizer,
                               trainer.device, trainer.grad_scaler, trainer.world)
        try:
            trainer.num_updates, trainer.episodes = int(meta["num_updates"]), int(meta["episodes"])
            trainer.tokens, trainer.elapsed_before = float(meta["tokens"]), float(meta["elapsed_seconds"])
            trainer.kl_controller.load_state_dict(meta["kl_controller"])
            set_python_random_state(trainer.order_rng, meta["order_rng"])
            trainer.prompt_queue = [int(i) for i in meta["prompt_queue"]]
            trainer.score_moments.load_state_dict({name: arrays[f"score_moments.{name}"] for name in ("mean", "var", "count")})
            trainer.minibatch_generator.set_state(rank_array(arrays, "rng.minibatch_order", trainer.world))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: checkpoint state is incomplete or malformed ({type(exc).__name__}: {exc})") from None
        if any(i >= len(trainer.prompts) for i in trainer.prompt_queue):
            raise ConfigError(f"{source}: the run had more prompts than {len(trainer.prompts)}; resume with the same prompts")
        trainer.resumed_from = checkpoint_dir
        return trainer

