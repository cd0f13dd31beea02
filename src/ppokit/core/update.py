"""The PPO minibatch step with autograd (x gradient accumulation), run by the core's one update loop."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import numpy as np
import torch

from ppokit.core.batch import micro_batch_slices
from ppokit.core.losses import clipped_surrogate, entropy_bonus, loss_aggregation, masked_whiten, reference_kl_penalty, value_loss
from ppokit.core.settings import UpdateSettings
from ppokit.core.update_loop import minibatch_moments, run_update, whitening

# evaluate(minibatch) -> (new log-probs, entropies, new values), each shaped like minibatch["logprobs"]
EvaluateFn = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def ppo_update(
    evaluate: EvaluateFn,
    optimizer: torch.optim.Optimizer,
    parameters: Iterable[torch.nn.Parameter],
    samples: dict[str, torch.Tensor],
    settings: UpdateSettings,
    generator: torch.Generator | None = None,
    order: Callable[[int], torch.Tensor] | None = None,
    grad_scaler: torch.amp.GradScaler | None = None,
    world=None,
    ddp_modules: Iterable[torch.nn.Module] = (),
) -> dict[str, float]:
    """Run the PPO optimization on ``samples`` and return averaged statistics.

    ``samples`` holds tensors whose first axis is the sample axis (flattened steps for Gymnasium,
    sequences for language models): ``logprobs``, ``values``, ``advantages``, ``returns``, anything
    ``evaluate`` needs, and optionally ``mask``. Without a value model ``evaluate`` returns None for the
    values, and ``values`` and ``returns`` may be absent (no value loss). Without ``logprobs`` (one epoch,
    nothing scored at rollout time) the old log-probs are the minibatch's own, detached: the ratio is exactly 1
    and the gradient is the policy gradient. With ``settings.kl_loss_coef`` the samples carry ``ref_logprobs``
    and the k3 KL to them is a term of the loss. A minibatch whose loss or gradient norm is not
    finite is skipped (no optimizer step) and counted in ``skipped_steps``;
    ``trailing_skipped_steps`` counts the skipped ones in a row at the end. ``order(epoch)``, if given, is the permutation of
    the samples for that epoch (a caller that scored the samples in the first epoch's minibatch
    layout passes it, so the first ratio is exactly 1); where it is absent or returns None,
    ``generator`` draws the permutation.
    ``grad_scaler``: float16 loss scaling (torch.amp.GradScaler); a step whose scaled gradient
    overflowed is skipped like any non-finite step, and the scaler lowers its scale.

    Data parallel (``world.distributed``, ``ppokit.distributed``): every rank passes its own share of
    the samples (the same count on each) and ``evaluate`` runs the models through their
    DistributedDataParallel wrappers, ``ddp_modules`` (their gradients are synchronized once per
    minibatch, after the last micro-batch). Whitening, the target-KL test and the statistics are
    global, and each rank's loss is weighted by its share of the global minibatch, so the averaged
    gradient is the gradient of the single-process loss on the global minibatch.
    """
    parameters = [p for p in parameters if p.requires_grad]
    num_samples = samples["advantages"].shape[0]
    device = samples["advantages"].device
    parallel = DataParallel(world, list(ddp_modules)) if world is not None and world.distributed else None

    def step(indices: torch.Tensor, moments=None):
        indices = indices.to(device)  # the order is drawn on the CPU generator, whatever the device
        minibatch = {name: tensor[indices] for name, tensor in samples.items()}
        return _minibatch_step(evaluate, optimizer, parameters, minibatch, settings, grad_scaler, parallel, moments)

    def permutation(epoch: int) -> torch.Tensor:
        given = order(epoch) if order is not None else None
        return given if given is not None else torch.randperm(num_samples, generator=generator, device="cpu")

    units = aggregation_units(samples.get("mask"), settings.loss_aggregation)

    def local_moments(indices: torch.Tensor):
        return minibatch_moments(samples["advantages"], samples.get("mask"), indices.to(device), settings.minibatch_size, units)

    return run_update(step, num_samples, settings, permutation, world, local_moments)


class DataParallel:
    """What a minibatch step needs to run as one rank of several: the world and the DDP wrappers."""

    def __init__(self, world, ddp_modules: list[torch.nn.Module]):
        self.world = world
        self.ddp_modules = ddp_modules

    def no_sync(self, last: bool):
        """Gradient accumulation: DDP exchanges gradients only after the minibatch's last micro-batch."""
        stack = contextlib.ExitStack()
        if not last:
            for module in self.ddp_modules:
                stack.enter_context(module.no_sync())
        return stack

    def global_stats(self, accumulated: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-rank shares of the statistics summed over ranks; the ratio deviation's maximum."""
        names = [name for name in accumulated if name != "ratio_max_deviation"]
        local = np.array([float(accumulated[name]) for name in names] + [float(accumulated["ratio_max_deviation"])])
        gathered = self.world.gather(local)
        total = gathered[:, :-1].sum(axis=0)
        result = {name: torch.tensor(float(total[i])) for i, name in enumerate(names)}
        result["ratio_max_deviation"] = torch.tensor(float(gathered[:, -1].max()))
        return result


# statistics that are means over real steps whatever the loss aggregation (the losses are means over its units)
PER_STEP_STATS = frozenset({"old_approx_kl", "approx_kl", "clipfrac", "entropy", "kl"})


def aggregation_units(mask: torch.Tensor | None, mode: str) -> torch.Tensor | None:
    """Per sample, the units a loss is a mean over under ``mode`` (``loss_aggregation``): real tokens, or one per
    sequence with a real token. None where they are the real steps the mask already counts."""
    if mode == "token-mean" or mask is None or mask.dim() < 2:
        return None
    return (mask.sum(-1) > 0).to(mask.dtype)


def _minibatch_step(evaluate, optimizer, parameters, minibatch, settings, grad_scaler=None, parallel: DataParallel | None = None,
                    moments=None) -> dict[str, torch.Tensor] | None:
    mask = minibatch.get("mask")
    advantages = minibatch["advantages"]
    # Whiten over the whole minibatch (not per micro-batch); one sample has no spread to divide by.
    count = advantages.numel() if mask is None else int(mask.sum())
    units = aggregation_units(mask, settings.loss_aggregation)
    total_units = float(count) if units is None else float(units.sum())
    if moments is not None:  # data parallel: the global minibatch's count, units and whitening
        count = float(moments[0])
        total_units = float(moments[3]) if len(moments) > 3 else count
        if settings.normalize_advantage and count > 1:
            center, std = whitening(moments)
            advantages = (advantages - center) / std
    elif settings.normalize_advantage and count > 1:
        advantages = masked_whiten(advantages, mask)
    if mask is not None:
        advantages = advantages * mask

    micro_batches = _split(minibatch | {"advantages": advantages}, settings.grad_accum_steps)
    total_units = total_units if total_units > 0 else 1.0
    total_count = float(count) if count > 0 else 1.0
    optimizer.zero_grad(set_to_none=True)
    accumulated: dict[str, torch.Tensor] = {}
    for number, micro in enumerate(micro_batches):
        micro_mask = micro.get("mask")
        micro_count = micro["advantages"].numel() if micro_mask is None else float(micro_mask.sum())
        aggregate, micro_units = loss_aggregation(micro_mask, settings.loss_aggregation, settings.aggregation_horizon)
        micro_units = micro_count if units is None else float(micro_units)
        with parallel.no_sync(last=number == len(micro_batches) - 1) if parallel is not None else contextlib.nullcontext():
            logprob, entropy, values = evaluate(micro)
            old_logprob = micro["logprobs"] if "logprobs" in micro else logprob.detach()
            pg_loss, pg_stats = clipped_surrogate(logprob, old_logprob, micro["advantages"], settings.clip_range, micro_mask,
                                                  settings.clip_range_high, aggregate)
            if settings.target_kl is not None and _approx_kl(pg_stats["approx_kl"], micro_count, parallel) > 1.5 * settings.target_kl:
                optimizer.zero_grad(set_to_none=True)
                return None
            loss = pg_loss
            terms = {**pg_stats, "policy_loss": pg_loss.detach()}
            if values is not None:
                v_loss, v_stats = value_loss(values, micro["values"], micro["returns"], settings.clip_range_vf, micro_mask, aggregate)
                loss = loss + settings.vf_coef * v_loss
                terms |= v_stats
            ent, ent_stats = entropy_bonus(entropy, micro_mask, aggregate)
            loss = loss - settings.ent_coef * ent
            terms |= ent_stats
            if settings.kl_loss_coef:
                kl_loss, kl_stats = reference_kl_penalty(logprob, micro["ref_logprobs"], micro_mask, aggregate)
                loss = loss + settings.kl_loss_coef * kl_loss
                terms |= kl_stats
            # Weight each micro-batch by its share of the minibatch's units (real steps, or sequences) so accumulation
            # equals one big batch (data parallel: its share of the global minibatch, times the ranks DDP's average divides by).
            weight = micro_units / total_units
            weighted = loss * (weight * parallel.world.size if parallel is not None else weight)
            (grad_scaler.scale(weighted) if grad_scaler is not None else weighted).backward()
        # the losses are means over units; the statistics of tokens (KL, clip fraction, entropy) means over real steps
        step_share = micro_count / total_count
        for name, value in {**terms, "loss": loss.detach()}.items():
            if name == "ratio_max_deviation":
                accumulated[name] = torch.maximum(accumulated.get(name, value), value)
            else:
                accumulated[name] = accumulated.get(name, 0.0) + value * (step_share if name in PER_STEP_STATS else weight)

    if parallel is not None:
        accumulated = parallel.global_stats(accumulated)
    if grad_scaler is not None:
        grad_scaler.unscale_(optimizer)  # clip and test the true gradient, not the scaled one
    if settings.max_grad_norm is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm, foreach=True)
    else:
        grad_norm = torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in parameters if p.grad is not None))
    if not (math.isfinite(float(grad_norm)) and math.isfinite(float(accumulated["loss"]))):
        optimizer.zero_grad(set_to_none=True)
        if grad_scaler is not None:
            grad_scaler.update()  # an overflow: the scale shrinks for the next step
        return {"skipped": True, "ratio_max_deviation": accumulated["ratio_max_deviation"]}
    if grad_scaler is not None:
        grad_scaler.step(optimizer)
        grad_scaler.update()
    else:
        optimizer.step()
    accumulated["grad_norm"] = grad_norm.detach()
    return accumulated


def _approx_kl(local_kl: torch.Tensor, count: float, parallel: DataParallel | None) -> float:
    """The micro-batch's approx KL for the target-KL test: over every rank's share when data parallel."""
    if parallel is None:
        return float(local_kl)
    total_kl, total_count = parallel.world.sum(np.array([float(local_kl) * count, count]))
    return total_kl / max(total_count, 1.0)


def _split(minibatch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    if parts <= 1:
        return [minibatch]
    size = next(iter(minibatch.values())).shape[0]
    return [{k: v[part] for k, v in minibatch.items()} for part in micro_batch_slices(size, parts)]


__all__ = ["UpdateSettings", "ppo_update"]
