"""What an LM PPO update logs: the row of progress.csv (and TensorBoard) over every rank's responses, and the held-out part."""

from __future__ import annotations

import numpy as np
import torch

from ppokit.core.estimators import group_statistics
from ppokit.core.losses import kl_k1
from ppokit.core.metrics import explained_variance, explained_variance_from_sums, explained_variance_sums
from ppokit.lm.parallel import gather_batch
from ppokit.lm.rollout import Rollout

COLUMNS = ["step", "episodes", "time_elapsed", "charts/episodes_per_second", "charts/tokens_per_second", "env/score", "env/score_normalized",
           "env/gold", "env/kl", "env/kl_coef", "env/response_length", "env/response_length_max", "env/eos_fraction", "env/clipped_fraction",
           "env/reward_total", "env/zero_variance_groups", "env/dropped_groups", "env/sampling_rounds",
           "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/kl", "losses/approx_kl", "losses/clipfrac",
           "losses/explained_variance", "losses/grad_norm", "losses/first_ratio_deviation", "time/generate", "time/score", "time/update",
           "eval/score", "eval/score_mean", "eval/pass@k", "eval/kl", "eval/response_length"]
# the update's statistics that are logged as losses/<name> (value_loss only with a value model)
LOSS_STATISTICS = ("policy_loss", "value_loss", "entropy", "kl", "approx_kl", "clipfrac", "grad_norm", "first_ratio_deviation")


def rollout_sums(trainer, rollout: Rollout) -> tuple[torch.Tensor, list[float] | None]:
    """Per response (over every rank, in rank order): raw score, normalized score, EOS, total reward, length, summed KL, gold."""
    mask = rollout.mask
    gold = [trainer.gold_reward(p, r) for p, r in zip(rollout.prompts, rollout.texts)] if trainer.gold_reward is not None else None
    kl_sum = kl_k1(rollout.logprobs, rollout.ref_logprobs).mul(mask).sum(1) if rollout.kl is not None else torch.zeros(len(rollout))
    columns = [rollout.responses.raw_scores, rollout.scores, rollout.has_eos, rollout.token_rewards.sum(1), mask.sum(1), kl_sum,
               torch.tensor(gold or [0.0] * len(rollout))]
    return gather_batch(torch.stack([column.to(mask.device, trainer.stats_dtype) for column in columns], 1), trainer.world), gold


def update_row(trainer, rollout: Rollout, stats: dict[str, float], elapsed: float) -> tuple[dict[str, float], float, float | None]:
    """The logged statistics of the update, the response tokens it generated (all ranks) and the mean summed KL for the KL
    controller (None without a KL scored at sampling time). ``trainer.tokens`` is the run's total before this update."""
    count = len(rollout) * trainer.world.size
    per_response, gold = rollout_sums(trainer, rollout)
    raw_score, score, eos, reward_total, tokens, kl, gold_total = per_response.sum(0).tolist()
    episodes, run_tokens = trainer.episodes, trainer.tokens + tokens
    row = {"episodes": episodes, "time_elapsed": elapsed, "charts/episodes_per_second": episodes / max(elapsed, 1e-9),
           "charts/tokens_per_second": run_tokens / max(elapsed, 1e-9), "env/score": raw_score / count, "env/score_normalized": score / count,
           "env/kl_coef": trainer.kl_controller.value, "env/response_length": tokens / count, "env/response_length_max": float(per_response[:, 4].max()),
           "env/eos_fraction": eos / count, "env/clipped_fraction": 1.0 - eos / count, "env/reward_total": reward_total / count,
           **rollout.extra}
    if rollout.kl is not None:
        row["env/kl"] = kl / count
    elif "kl" in stats:  # kl_penalty: loss, nothing scored at sampling time: the update's mean k3 per token, per response
        row["env/kl"] = stats["kl"] * tokens / count
    has_values = trainer.models.value_model is not None
    if has_values:
        row["losses/explained_variance"] = values_explained(rollout, trainer.world)
    if trainer.config.estimator.needs_groups:
        row["env/zero_variance_groups"] = zero_variance_share(rollout, trainer.config.samples_per_prompt, trainer.stats_dtype, trainer.world)
    if gold is not None:
        row["env/gold"] = gold_total / count
    row |= {f"losses/{name}": stats[name] for name in LOSS_STATISTICS if name in stats and (name != "value_loss" or has_values)}
    return row, tokens, (kl / count if rollout.kl is not None else None)


def values_explained(rollout: Rollout, world) -> float:
    """The explained variance of the value model's predictions of the returns, over every rank's tokens."""
    values, mask = rollout.values * rollout.mask, rollout.mask
    if world.distributed:
        return explained_variance_from_sums(world.sum(explained_variance_sums(values, rollout.returns, mask)))
    return explained_variance(values, rollout.returns, mask)


def zero_variance_share(rollout: Rollout, samples_per_prompt: int, dtype: torch.dtype, world) -> float:
    """The share of groups whose scores are all equal (they get advantage 0 from a group estimator), over every rank."""
    _, _, stds = group_statistics(rollout.scores.to(dtype), rollout.group_ids)
    per_group = stds.view(-1, samples_per_prompt)[:, 0]
    zero, groups = world.sum(np.array([float((per_group == 0).sum()), float(per_group.numel())])).tolist()
    return zero / groups


def held_out_row(result: dict, eval_samples: int) -> dict[str, float]:
    """The eval/ columns of an evaluation's result (``ppokit.lm.evaluation``)."""
    row = {"eval/score": result["score"], "eval/response_length": result["response_length"]}
    if eval_samples:
        row |= {"eval/score_mean": result["score_mean"], "eval/pass@k": result[f"pass@{eval_samples}"]}
    if "kl" in result:
        row["eval/kl"] = result["kl"]
    return row
