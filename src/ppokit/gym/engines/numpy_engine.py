"""The numpy engine: PPO's minibatch update for the MLP policy with hand-written gradients.

It supplies the step of one minibatch to the core's update loop (``ppokit.core.update_loop``, which
owns the epochs, the target-KL stop and the statistics) and computes the same loss as the torch
step (clipped surrogate, value loss with optional clipping, entropy bonus, per-minibatch advantage
whitening, global grad-norm clip, Adam) in a few dozen whole-array operations per minibatch, with no autograd graph and no framework dispatch.
On classic-control networks that is several times faster than the torch engine, which stays the
reference: tests check that both produce the same update.
"""

from __future__ import annotations

import math

import numpy as np

from ppokit.core.settings import UpdateSettings
from ppokit.core.update_loop import minibatch_moments, run_update, whitening
from ppokit.distributed import World
from ppokit.gym.engines.numpy_adam import FlatAdam
from ppokit.gym.policies.distributions import mask_logits
from ppokit.gym.policies.numpy_mlp import NumpyMLP
from ppokit.gym.policies.numpy_params import PolicyParameters


class NumpyEngine:
    """A minibatch whose loss or gradient is not finite is skipped (no optimizer step) and counted in
    the stats as ``skipped_steps``; ``trailing_skipped_steps`` counts those in a row at the end."""

    name = "numpy"

    def __init__(self, params: PolicyParameters, dist, activation: str, learning_rate: float, adam_eps: float, world: World | None = None):
        self.params = params
        # data parallel: each rank steps on its share of every minibatch and the flat gradient is summed over ranks
        self.world = world or World()
        self.world.broadcast_(params.flat)  # every rank starts from rank 0's weights
        self.dist = dist
        self.actor = NumpyMLP(params.layers("actor"), activation)
        self.critic = NumpyMLP(params.layers("critic"), activation)
        self.log_std = params.views.get("log_std")
        self.log_std_grad = params.grad_views.get("log_std")
        self.optimizer = FlatAdam(params.flat, params.grad, learning_rate, adam_eps)

    def set_learning_rate(self, learning_rate: float) -> None:
        self.optimizer.lr = learning_rate

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer's state, for checkpoints."""
        return {f"adam.{name}": array for name, array in self.optimizer.state_dict().items()}

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        self.optimizer.load_state_dict({name[len("adam."):]: array for name, array in arrays.items()})

    def score(self, obs: np.ndarray, actions: np.ndarray, action_masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(log-probs, values) computed exactly as the update's forward pass computes them."""
        logprob, _, _ = self.dist.log_prob_entropy(mask_logits(self.actor.forward(obs), action_masks), actions, self.log_std)
        return logprob.astype(np.float32, copy=False), self.critic.forward(obs)[:, 0]

    def update(self, samples: dict[str, np.ndarray], settings: UpdateSettings, order) -> dict[str, float]:
        """The core's update loop over ``samples``; ``order(epoch)`` gives each epoch's permutation."""
        def step(index: np.ndarray, moments: np.ndarray | None = None):
            return self._minibatch_step({name: array[index] for name, array in samples.items()}, settings, moments)

        def local_moments(permutation):
            return minibatch_moments(samples["advantages"], samples.get("mask"), permutation, settings.minibatch_size)

        return run_update(step, len(samples["advantages"]), settings, order, self.world, local_moments)

    def _minibatch_step(self, mb: dict[str, np.ndarray], settings: UpdateSettings, moments: np.ndarray | None = None) -> dict[str, float] | None:
        """``moments``: data parallel, this minibatch's global (count, advantage sum, sum of squares); every
        mean then divides by the global count, so the per-rank sums add up to the global means."""
        mask = mb.get("mask")
        advantages = mb["advantages"]
        count = (len(advantages) if mask is None else float(mask.sum())) if moments is None else float(moments[0])
        # each sample's weight in the mean over real samples
        weight = 1.0 / max(count, 1.0) if mask is None else mask / max(count, 1.0)

        def mean(x):
            # a dot product with the sample weights: one call instead of numpy's mean() wrapper
            return float(x.sum()) * weight if mask is None else float(np.dot(x, weight))

        if settings.normalize_advantage and count > 1 and moments is not None:
            center, std = whitening(moments)
            advantages = ((advantages - center) / std).astype(np.float32)
        elif settings.normalize_advantage and count > 1:
            centered = advantages - mean(advantages)
            variance = (centered * centered).sum() / (count - 1) if mask is None else (centered * centered * mask).sum() / (count - 1)
            advantages = centered / np.sqrt(variance + 1e-8)
        if mask is not None:
            advantages = advantages * mask

        # --- forward: policy term ---
        # each action is judged under the mask it was taken with: invalid ones have no probability and get no gradient
        dist_params = mask_logits(self.actor.forward(mb["obs"], keep=True), mb.get("action_masks"))
        logprob, entropy, cache = self.dist.log_prob_entropy(dist_params, mb["actions"], self.log_std)
        log_ratio = logprob - mb["logprobs"]
        ratio = np.exp(log_ratio)
        approx_kl = mean((ratio - 1.0) - log_ratio)
        global_kl = float(self.world.sum(np.array([approx_kl]))[0]) if moments is not None and settings.target_kl is not None else approx_kl
        if settings.target_kl is not None and global_kl > 1.5 * settings.target_kl:
            return None
        low, high = 1.0 - settings.clip_range, 1.0 + settings.clip_range
        unclipped = -advantages * ratio
        clipped = -advantages * np.clip(ratio, low, high)
        policy_loss = mean(np.maximum(unclipped, clipped))
        inside = (ratio >= low) & (ratio <= high)
        deviation = np.abs(ratio - 1.0)
        if mask is not None:
            deviation = deviation * mask

        # --- forward: value term ---
        values = self.critic.forward(mb["obs"], keep=True)[:, 0]
        error = values - mb["returns"]
        if settings.clip_range_vf is None:
            squared = error * error
            grad_values = 2.0 * error
        else:
            delta = values - mb["values"]
            value_inside = np.abs(delta) <= settings.clip_range_vf
            clipped_error = mb["values"] + np.clip(delta, -settings.clip_range_vf, settings.clip_range_vf) - mb["returns"]
            clipped_squared = clipped_error * clipped_error
            squared = np.maximum(error * error, clipped_squared)
            # the gradient flows through whichever term is larger (through the clipped one only inside the clip)
            grad_values = np.where(clipped_squared > error * error, 2.0 * clipped_error * value_inside, 2.0 * error)
        value_loss = mean(squared)
        entropy_mean = mean(entropy)
        loss = policy_loss - settings.ent_coef * entropy_mean + settings.vf_coef * value_loss

        # --- backward ---
        # d(max(unclipped, clipped))/d ratio: -A where the unclipped term is active or the ratio is inside the clip
        grad_logprob = (-advantages * ratio) * ((unclipped > clipped) | inside) * weight
        grad_params, grad_log_std = self.dist.grad(cache, mb["actions"], grad_logprob, -settings.ent_coef * weight)
        self.actor.backward(grad_params.astype(np.float32, copy=False))
        grad_values *= settings.vf_coef * weight
        self.critic.backward(grad_values.astype(np.float32, copy=False)[:, None])
        if self.log_std_grad is not None:
            self.log_std_grad[...] = grad_log_std

        stats = {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy_mean,
            "old_approx_kl": mean(-log_ratio),
            "approx_kl": approx_kl,
            "clipfrac": mean(deviation > settings.clip_range),
            "loss": loss,
            "ratio_max_deviation": float(deviation.max()),
        }
        grad = self.params.grad
        if moments is not None:
            self._sum_over_ranks(grad, stats)
            loss = stats["loss"]
        grad_norm = math.sqrt(float(np.dot(grad, grad)))
        if not (math.isfinite(grad_norm) and math.isfinite(loss)):
            return {"skipped": True, "ratio_max_deviation": float("nan")}
        if settings.max_grad_norm is not None:
            coef = settings.max_grad_norm / (grad_norm + 1e-6)
            if coef < 1.0:
                grad *= coef
        self.optimizer.step()
        return stats | {"grad_norm": grad_norm}

    def _sum_over_ranks(self, grad: np.ndarray, stats: dict[str, float]) -> None:
        """One exchange per minibatch: the gradient and the statistics summed over ranks, the ratio deviation's maximum."""
        names = list(stats)
        # float32, as the gradient is computed: a large network's exchange is bandwidth-bound (half the bytes of float64)
        buffer = np.concatenate([grad, np.array([stats[name] for name in names], dtype=np.float32)])
        gathered = self.world.gather(buffer)
        total = gathered[0].copy()
        for part in gathered[1:]:
            total += part
        grad[...] = total[: len(grad)]
        for i, name in enumerate(names):
            stats[name] = float(total[len(grad) + i])
        stats["ratio_max_deviation"] = float(gathered[:, -1].max())
