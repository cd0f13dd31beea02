"""PPO for causal language models on ppokit.core.

One rollout: sample responses to a batch of prompts, cut them at EOS, score each finished text once
(reward model and/or functions), and turn that score into per-token rewards: minus kl_coef times the
per-token KL to the reference at every token, plus the score on the last real token. Advantages are
the core's GAE over the response tokens (time-major, the episode ends at the last real token), and
the update is the core's ppo_update with this module's evaluate() giving new log-probs, entropies
and values. Policy and value model are kept in eval mode, so no dropout makes the first ratio differ
from 1.
"""

from __future__ import annotations

import copy
import math
import random
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from ppokit.core.advantages import gae, next_values_from
from ppokit.core.losses import kl_k1, kl_k3, masked_whiten
from ppokit.core.metrics import explained_variance
from ppokit.core.running_stats import RunningMeanStd
from ppokit.core.schedules import AdaptiveKLController, FixedKLController
from ppokit.core.settings import UpdateSettings
from ppokit.core.update import ppo_update
from ppokit.errors import ConfigError
from ppokit.lm.checkpoints import save_training_state
from ppokit.lm.config import LMPPOConfig, apply_run_settings
from ppokit.lm.data import load_rows
from ppokit.lm.encoding import encode_prompt
from ppokit.lm.generation import GenerationSettings, sample_responses
from ppokit.lm.models import context_length, load_causal_lm, load_scalar_model, load_tokenizer, resize_for_tokenizer, save_pretrained
from ppokit.lm.reward_model import token_scores
from ppokit.lm.rewards import FunctionReward, ResponseBatch, RewardModelReward, SumReward, load_function
from ppokit.lm.sequences import causal_inputs, last_token_index, pad_sequences, token_entropy, token_logprobs, truncate_at_eos
from ppokit.logging import MetricsLogger

KL_ESTIMATORS = {"k1": kl_k1, "k3": kl_k3}
COLUMNS = ["step", "episodes", "time_elapsed", "charts/episodes_per_second", "env/score", "env/score_normalized", "env/gold",
           "env/kl", "env/kl_coef", "env/response_length", "env/eos_fraction", "env/reward_total",
           "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac",
           "losses/explained_variance", "losses/grad_norm", "losses/first_ratio_deviation"]


def token_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, gae_lambda: float):
    """Advantages and returns [B, R] of response tokens: the core's GAE, time-major, each response one
    episode that ends (terminated, no bootstrap) at its last real token. Padding gets 0."""
    mask = mask.float()
    rewards_t, values_t = (rewards * mask).T, (values * mask).T
    after_last = (torch.arange(mask.shape[1]).unsqueeze(1) >= last_token_index(mask).unsqueeze(0))  # [R, B]
    advantages, returns = gae(rewards_t, values_t, next_values_from(values_t, torch.zeros(mask.shape[0])),
                              terminated=after_last, dones=after_last, gamma=gamma, gae_lambda=gae_lambda)
    return advantages.T * mask, returns.T * mask


def per_token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """-kl_coef * KL at every real token, plus the sequence's score on its last real token."""
    rewards = -kl_coef * kl * mask
    rows = torch.arange(scores.shape[0])
    rewards[rows, last_token_index(mask)] += scores
    return rewards


class LMPPOTrainer:
    """PPO of ``policy`` against ``reward``. Everything not given is loaded from the paths in ``config``.

    ``reward``: a source with ``score(ResponseBatch)`` (RewardModelReward, FunctionReward, SumReward) or
    a plain function (prompt, response) -> float. ``gold_reward``: an optional function that is only
    logged (env/gold), for demos where the true reward is known.
    """

    def __init__(self, config: LMPPOConfig, run_dir: str | Path | None = None, policy=None, tokenizer=None, reference=None,
                 value_model=None, reward=None, prompts: list[str] | None = None, gold_reward=None,
                 progress: bool | None = None, verbose: bool = True):
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        apply_run_settings(config)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.policy)
        policy = policy if policy is not None else load_causal_lm(config.policy, self.tokenizer)
        resize_for_tokenizer(policy, self.tokenizer)
        self.reward = self._build_reward(reward)
        self.policy, self.reference = self._build_policy_and_reference(policy, reference)
        self.value_model = self._build_value_model(value_model)
        self.prompts = prompts if prompts is not None else [row["prompt"] for row in load_rows(config.prompts, "prompt")]
        self.prompt_ids = self._encode_prompts(self.prompts)
        self.gold_reward = gold_reward
        self.kl_estimator = KL_ESTIMATORS[config.kl_estimator]
        self.kl_controller = (AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon) if config.adaptive_kl
                              else FixedKLController(config.kl_coef))
        self.score_moments = RunningMeanStd.fresh()
        self.generation = GenerationSettings(config.max_new_tokens, config.temperature, config.top_k, config.top_p)
        self.parameters = [p for p in list(self.policy.parameters()) + list(self.value_model.parameters()) if p.requires_grad]
        # fused: one kernel for all parameters; with small models the per-tensor optimizer overhead is ~5% of an update
        self.optimizer = torch.optim.Adam(self.parameters, lr=config.learning_rate, eps=config.adam_eps, fused=True)
        self.settings = UpdateSettings(n_epochs=config.n_epochs, minibatch_size=config.minibatch_size, clip_range=config.clip_range,
                                       clip_range_vf=config.clip_range_vf, ent_coef=config.ent_coef, vf_coef=config.vf_coef,
                                       max_grad_norm=config.max_grad_norm, target_kl=config.target_kl,
                                       normalize_advantage=False, grad_accum_steps=config.grad_accum_steps)
        self.order_rng = random.Random(config.seed)
        self.minibatch_generator = torch.Generator().manual_seed(config.seed)
        self.num_updates = self.episodes = 0
        self.progress, self.verbose = progress, verbose

    # ------------------------------------------------------------------ set-up
    def _build_reward(self, reward):
        config = self.config
        if reward is not None:
            return reward if hasattr(reward, "score") else FunctionReward(reward)
        sources = []
        if config.reward_model:
            sources.append(RewardModelReward(load_scalar_model(config.reward_model), load_tokenizer(config.reward_model)))
        sources += [FunctionReward(load_function(spec), name=spec) for spec in config.reward_function]
        if not sources:
            raise ConfigError("no reward: set reward_model and/or reward_function (e.g. reward_function=[my_module:score])")
        return sources[0] if len(sources) == 1 else SumReward(sources)

    def _build_policy_and_reference(self, policy, reference):
        config = self.config
        if config.lora is not None:
            from peft import LoraConfig, get_peft_model

            lora = config.lora
            policy = get_peft_model(policy, LoraConfig(r=lora.get("r", 8), lora_alpha=lora.get("alpha", 16), lora_dropout=lora.get("dropout", 0.0),
                                                       target_modules=lora.get("target_modules"), task_type="CAUSAL_LM"))
        if reference is None and config.reference is not None:
            reference = load_causal_lm(config.reference, self.tokenizer)
        if reference is None and config.lora is None:
            reference = copy.deepcopy(policy)
        if reference is not None:
            reference.eval().requires_grad_(False)
        return policy.eval(), reference  # None: the LoRA policy with its adapter switched off

    def _build_value_model(self, value_model):
        config = self.config
        if value_model is None:
            if config.value_model:
                value_model = load_scalar_model(config.value_model, self.tokenizer)
            elif isinstance(self.reward, RewardModelReward):
                value_model = copy.deepcopy(self.reward.model)  # the usual start: the reward model's weights
            elif config.reward_model:
                value_model = load_scalar_model(config.reward_model, self.tokenizer)
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

    def _encode_prompts(self, prompts: list[str]) -> list[list[int]]:
        if not prompts:
            raise ConfigError("no prompts: the prompt dataset is empty")
        limit = context_length(self.policy)
        room = None if limit is None else limit - self.config.max_new_tokens
        encoded = []
        for number, text in enumerate(prompts, start=1):
            ids = encode_prompt(self.tokenizer, text)
            if room is not None and len(ids) > room:
                if not self.config.truncate_prompts or room < 1:
                    raise ConfigError(f"prompt {number} is {len(ids)} tokens; with max_new_tokens={self.config.max_new_tokens} it does not fit "
                                      f"the model's context of {limit} tokens (set truncate_prompts=true to keep its last {room} tokens)")
                ids = ids[-room:]
            encoded.append(ids)
        return encoded

    # ------------------------------------------------------------------ rollout
    def _forward(self, model, sequence_ids, sequence_mask, prompt_width):
        """Response-token logits [B, R, V]: the logits at position t predict token t + 1."""
        # only the response positions need logits: with a large vocabulary the LM head is most of the cost
        keep = sequence_ids.shape[1] - prompt_width + 1
        logits = model(input_ids=sequence_ids, logits_to_keep=keep, **causal_inputs(sequence_mask)).logits
        return logits[:, -keep:-1]

    def _reference_logprobs(self, sequence_ids, sequence_mask, responses, prompt_width):
        context = self.policy.disable_adapter() if self.reference is None else nullcontext()
        with context:
            model = self.policy if self.reference is None else self.reference
            return token_logprobs(self._forward(model, sequence_ids, sequence_mask, prompt_width), responses, self.config.temperature)

    def _sample_and_score(self, prompts: list[str], prompt_tokens: list[list[int]], settings: GenerationSettings) -> dict:
        """Generate, cut at EOS, score once, and compute the policy's and the reference's log-probs."""
        prompt_ids, prompt_mask = pad_sequences(prompt_tokens, self.tokenizer.pad_token_id, side="left")
        raw = sample_responses(self.policy, prompt_ids, prompt_mask, settings, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        responses, response_mask, has_eos = truncate_at_eos(raw, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        sequence_ids, sequence_mask = torch.cat([prompt_ids, responses], 1), torch.cat([prompt_mask, response_mask], 1)
        width = prompt_ids.shape[1]
        logprobs = token_logprobs(self._forward(self.policy, sequence_ids, sequence_mask, width), responses, self.config.temperature)
        ref_logprobs = self._reference_logprobs(sequence_ids, sequence_mask, responses, width)
        texts = [self.tokenizer.decode(r[m.bool()].tolist(), skip_special_tokens=True) for r, m in zip(responses, response_mask)]
        scores = self.reward.score(ResponseBatch(prompts, texts, sequence_ids, sequence_mask, self.tokenizer))
        return {"prompts": prompts, "responses": texts, "raw_scores": scores, "has_eos": has_eos, "prompt_width": width,
                "sequence_ids": sequence_ids, "sequence_mask": sequence_mask, "response_ids": responses,
                "mask": response_mask.float(), "logprobs": logprobs, "ref_logprobs": ref_logprobs}

    @torch.no_grad()
    def rollout(self, prompt_indices: list[int]) -> dict:
        """Sample, score and shape rewards for one batch of prompts."""
        sampled = self._sample_and_score([self.prompts[i] for i in prompt_indices], [self.prompt_ids[i] for i in prompt_indices], self.generation)
        width, mask, logprobs = sampled["prompt_width"], sampled["mask"], sampled["logprobs"]
        values = token_scores(self.value_model, sampled["sequence_ids"], sampled["sequence_mask"])[:, width - 1 : -1]
        scores = sampled["raw_scores"].clone()
        if self.config.missing_eos_penalty is not None:
            scores[~sampled["has_eos"]] -= self.config.missing_eos_penalty
        scores = self._normalize_scores(scores)
        kl = self.kl_estimator(logprobs, sampled["ref_logprobs"]) * mask
        rewards = per_token_rewards(scores, kl, mask, self.kl_controller.value)
        advantages, returns = token_advantages(rewards, values, mask, self.config.gamma, self.config.gae_lambda)
        if self.config.whiten_advantages:
            advantages = masked_whiten(advantages, mask) * mask
        return {
            **{k: sampled[k] for k in ("prompts", "responses", "raw_scores", "has_eos", "prompt_width")},
            "scores": scores, "rewards": rewards, "kl_sum": kl_k1(logprobs, sampled["ref_logprobs"]).mul(mask).sum(1),
            "samples": {"sequence_ids": sampled["sequence_ids"], "sequence_mask": sampled["sequence_mask"], "responses": sampled["response_ids"],
                        "mask": mask, "logprobs": logprobs, "values": values * mask, "advantages": advantages, "returns": returns},
        }

    def _normalize_scores(self, scores: torch.Tensor) -> torch.Tensor:
        mode = self.config.score_normalization
        if mode == "batch" and scores.numel() > 1:
            scores = (scores - scores.mean()) / (scores.std() + 1e-8)
        elif mode == "running":
            self.score_moments.update(scores.numpy())
            scores = (scores - float(self.score_moments.mean)) / math.sqrt(float(self.score_moments.var) + 1e-8)
        if self.config.score_clip is not None:
            scores = scores.clamp(-self.config.score_clip, self.config.score_clip)
        return scores

    # ------------------------------------------------------------------ update
    def update(self, batch: dict) -> dict[str, float]:
        """One ppokit.core PPO update on a rollout's samples (sequences are the sample axis)."""
        width = batch["prompt_width"]

        def evaluate(minibatch):
            logits = self._forward(self.policy, minibatch["sequence_ids"], minibatch["sequence_mask"], width)
            logprob = token_logprobs(logits, minibatch["responses"], self.config.temperature)
            with nullcontext() if self.config.ent_coef else torch.no_grad():  # without a bonus entropy is only reported
                entropy = token_entropy(logits, self.config.temperature)
            values = token_scores(self.value_model, minibatch["sequence_ids"], minibatch["sequence_mask"])[:, width - 1 : -1]
            return logprob, entropy, values

        return ppo_update(evaluate, self.optimizer, self.parameters, batch["samples"], self.settings, generator=self.minibatch_generator)

    # ------------------------------------------------------------------ loop
    def train(self) -> dict[str, float]:
        config = self.config
        total_updates = config.total_episodes // config.batch_size
        logger = MetricsLogger(self.run_dir, COLUMNS, total=total_updates * config.batch_size, unit="episode",
                               tensorboard=config.tensorboard, progress=self.progress, console=self.verbose, log_interval=config.log_interval)
        started = time.perf_counter()
        queue: list[int] = []
        try:
            while self.num_updates < total_updates:
                while len(queue) < config.batch_size:
                    order = list(range(len(self.prompts)))
                    self.order_rng.shuffle(order)
                    queue += order
                indices, queue = queue[: config.batch_size], queue[config.batch_size :]
                batch = self.rollout(indices)
                stats = self.update(batch)
                self.num_updates += 1
                self.episodes += len(indices)
                mean_kl = float(batch["kl_sum"].mean())
                row = self._row(batch, stats, mean_kl, time.perf_counter() - started)
                self.kl_controller.update(mean_kl, len(indices))
                logger.log(self.num_updates, self.episodes, row, ["env/score", "env/gold", "env/kl", "losses/approx_kl"])
                if self.run_dir is not None and config.checkpoint_interval and self.num_updates % config.checkpoint_interval == 0:
                    self.save_checkpoint()
        finally:
            logger.close()
        self.history = logger.rows
        if self.run_dir is not None:
            self.save_checkpoint()
            self.save(self.run_dir / "policy")
        return {"updates": self.num_updates, "episodes": self.episodes, "seconds": time.perf_counter() - started,
                "final_score": logger.rows[-1]["env/score"] if logger.rows else float("nan")}

    def _row(self, batch: dict, stats: dict[str, float], mean_kl: float, elapsed: float) -> dict[str, float]:
        samples = batch["samples"]
        row = {"episodes": self.episodes, "time_elapsed": elapsed, "charts/episodes_per_second": self.episodes / max(elapsed, 1e-9),
               "env/score": float(batch["raw_scores"].mean()), "env/score_normalized": float(batch["scores"].mean()),
               "env/kl": mean_kl, "env/kl_coef": self.kl_controller.value, "env/response_length": float(samples["mask"].sum(1).mean()),
               "env/eos_fraction": float(batch["has_eos"].float().mean()), "env/reward_total": float(batch["rewards"].sum(1).mean()),
               "losses/explained_variance": explained_variance(samples["values"], samples["returns"], samples["mask"])}
        if self.gold_reward is not None:
            row["env/gold"] = sum(self.gold_reward(p, r) for p, r in zip(batch["prompts"], batch["responses"])) / len(batch["prompts"])
        for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "grad_norm", "first_ratio_deviation"):
            if name in stats:
                row[f"losses/{name}"] = stats[name]
        return row

    # ------------------------------------------------------------------ evaluation and saving
    @torch.no_grad()
    def evaluate(self, prompts: list[str], gold_reward=None, greedy: bool = False, seed: int = 12345) -> dict[str, float]:
        """Mean reward score, gold reward and summed KL to the reference of responses to ``prompts``."""
        saved_rng = torch.get_rng_state()
        torch.manual_seed(seed)
        try:
            settings = GenerationSettings(self.generation.max_new_tokens, self.generation.temperature, self.generation.top_k, self.generation.top_p, greedy)
            sampled = self._sample_and_score(prompts, self._encode_prompts(prompts), settings)
            kl = kl_k1(sampled["logprobs"], sampled["ref_logprobs"]).mul(sampled["mask"]).sum(1)
            result = {"score": float(sampled["raw_scores"].mean()), "kl": float(kl.mean()), "eos_fraction": float(sampled["has_eos"].float().mean()),
                      "samples": list(zip(prompts[:5], sampled["responses"][:5]))}
            if gold_reward is not None:
                result["gold"] = sum(gold_reward(p, r) for p, r in zip(prompts, sampled["responses"])) / len(prompts)
            return result
        finally:
            torch.set_rng_state(saved_rng)

    def trained_policy(self):
        """The policy as a plain causal LM (a LoRA adapter merged into a copy of the base)."""
        if hasattr(self.policy, "merge_and_unload"):
            return copy.deepcopy(self.policy).merge_and_unload()
        return self.policy

    def save(self, directory: str | Path) -> Path:
        """The policy (LoRA merged) and tokenizer, loadable with load_causal_lm; the value model beside it."""
        directory = Path(directory)
        save_pretrained(self.trained_policy(), self.tokenizer, directory)
        save_pretrained(self.value_model, self.tokenizer, directory / "value_model")
        return directory

    def save_checkpoint(self) -> Path:
        state = {"trainer": "lm_ppo", "num_updates": self.num_updates, "episodes": self.episodes, "kl_controller": self.kl_controller.state_dict(),
                 "score_moments": {k: float(getattr(self.score_moments, k)) for k in ("mean", "var", "count")}, "order_rng": list(self.order_rng.getstate()[1]), "config": self.config.to_dict()}
        return save_training_state(self.run_dir, self.num_updates, {"policy": self.policy, "value": self.value_model}, self.optimizer,
                                   state, self.config.keep_checkpoints)
