"""Held-out evaluation of a language-model policy: greedy responses and k sampled ones per prompt, scored with
the training reward. The training loop (``eval_prompts``, ``eval_interval``) and ``LMPPOTrainer.evaluate`` run
this one function.

Reported: ``score`` (mean reward of the greedy responses), ``score_mean`` (of the sampled ones), ``pass@k``
(the share of prompts with at least one sampled response whose reward reaches the pass threshold), ``kl``
(the sampled responses' summed k1 KL to the reference, where there is one), ``eos_fraction``,
``response_length``, and with a gold reward ``gold`` (greedy) and ``gold_mean`` (sampled). Sampling uses a
random stream of its own, so an evaluation leaves the training run's random state as it was.
"""

from __future__ import annotations

import torch

from ppokit.core.losses import kl_k1
from ppokit.lm.generation import GenerationSettings
from ppokit.lm.parallel import reshard
from ppokit.lm.rollout import Responses, pad_responses, sample
from ppokit.lm.scoring import in_chunks, response_logprobs


@torch.no_grad()
def evaluate_policy(trainer, prompts: list, prompt_tokens: list[list[int]], samples: int, pass_threshold: float, seed: int,
                    gold_reward=None) -> dict:
    """Score ``trainer``'s policy on ``prompts`` (LMPPOTrainer: its models, tokenizer, generation settings, device)."""
    kind = trainer.device.type
    with torch.random.fork_rng(devices=[trainer.device.index or 0] if kind != "cpu" else [], device_type=kind if kind != "cpu" else "cuda"):
        greedy = _scored(trainer, prompts, prompt_tokens, greedy=True)
        result = {"score": float(greedy.raw_scores.mean()), "eos_fraction": float(greedy.has_eos.float().mean()),
                  "response_length": sum(map(len, greedy.response_tokens)) / len(greedy), "samples": list(zip(prompts[:5], greedy.texts[:5]))}
        if gold_reward is not None:
            result["gold"] = _mean_gold(gold_reward, greedy)
        if samples:
            torch.manual_seed(seed)
            repeated = [i for i in range(len(prompts)) for _ in range(samples)]
            sampled = _scored(trainer, [prompts[i] for i in repeated], [prompt_tokens[i] for i in repeated], greedy=False)
            per_prompt = sampled.raw_scores.view(len(prompts), samples)
            result |= {"score_mean": float(per_prompt.mean()), f"pass@{samples}": float((per_prompt >= pass_threshold).any(1).float().mean())}
            if gold_reward is not None:
                result["gold_mean"] = _mean_gold(gold_reward, sampled)
            if trainer.models.uses_reference:
                result["kl"] = _mean_kl(trainer, sampled)
    reshard(trainer.models.policy, trainer.models.reference)  # (FSDP: after forward passes without a backward)
    return result


def _scored(trainer, prompts: list, prompt_tokens: list[list[int]], greedy: bool) -> Responses:
    base = trainer.generation
    settings = GenerationSettings(base.max_new_tokens, base.temperature, base.top_k, base.top_p, greedy)
    responses = sample(trainer.models.policy, trainer.tokenizer, list(range(len(prompts))), prompts, prompt_tokens, settings, trainer.precision,
                       trainer.device, trainer.config.generation_batch_size, synced=trainer.sharded)
    responses.raw_scores = trainer.reward_scores(pad_responses(responses, torch.zeros(len(responses)), trainer.tokenizer.pad_token_id, trainer.device))
    return responses


def _mean_gold(gold_reward, responses: Responses) -> float:
    return sum(gold_reward(p, r) for p, r in zip(responses.prompts, responses.texts)) / len(responses)


def _mean_kl(trainer, responses: Responses) -> float:
    rollout = pad_responses(responses, torch.zeros(len(responses)), trainer.tokenizer.pad_token_id, trainer.device)
    chunk, size = trainer.forward_batch_size, len(rollout)
    policy = in_chunks(lambda rows: response_logprobs(trainer.models.policy, rollout, rows, trainer.precision, trainer.config.temperature,
                                                      trainer.models.share_prompts, trainer.unsampled_token), size, chunk, trainer.device)
    reference = trainer.reference_logprobs(rollout)
    return float(kl_k1(policy, reference).mul(rollout.mask).sum(1).mean())
