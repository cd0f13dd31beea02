"""From a collected rollout to the update's samples: old log-probs and values, GAE advantages and returns, and the
minibatch order of every epoch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ppokit.core.advantages import gae, next_values_from
from ppokit.gym.config import PPOConfig
from ppokit.gym.policies.protocol import POLICY_INPUTS
from ppokit.gym.rollout import sequence_order


def update_samples(rollout, last_value: np.ndarray, engine, config: PPOConfig, shuffle_rng: np.random.Generator, minibatch_size: int,
                   recurrent: bool, keep_masked_steps: bool) -> tuple[dict[str, np.ndarray], Callable[[int], np.ndarray]]:
    """The samples of the update (obs, actions, policy inputs, logprobs, values, advantages, returns and, where masked
    steps stay in, mask) and ``order(epoch)``, the permutation of each epoch.

    Reset steps of NEXT_STEP envs (mask 0) are left out altogether, unless ``keep_masked_steps`` (data parallel,
    so that every rank has as many samples) or the policy is recurrent (its sequences must stay whole): then they
    stay in with weight 0."""
    flat = rollout.flatten()
    num_steps, num_envs = rollout.num_steps, rollout.num_envs
    keep = None if rollout.mask is None or keep_masked_steps or recurrent else np.flatnonzero(flat["mask"])
    taken = [name for name in ("obs", "actions", *POLICY_INPUTS) if name in flat]
    inputs = {name: flat[name] if keep is None else flat[name][keep] for name in taken}
    count = len(inputs["obs"])

    def draw_order() -> np.ndarray:  # a recurrent policy's minibatches are chunks of consecutive steps
        return sequence_order(shuffle_rng, num_steps, num_envs, config.sequence_length) if recurrent else shuffle_rng.permutation(count)

    first_order = draw_order()
    # not stored while acting: acting runs the actor alone on n_envs rows, and a row's log-prob rounds differently in
    # a batch of another shape, so the first ratio is exactly 1 only when scored in the first epoch's minibatches
    logprobs, kept_values = score_in_minibatches(engine, inputs, first_order, minibatch_size)
    values = kept_values
    if keep is not None:  # masked steps get value 0: only their own (unused) advantages read it
        values = np.zeros(num_steps * num_envs, dtype=np.float32)
        values[keep] = kept_values
    values = values.reshape(num_steps, num_envs)
    next_values = np.where(rollout["truncated"], rollout["truncated_values"], next_values_from(values, last_value))
    advantages, returns = gae(rollout["rewards"], values, next_values, rollout["terminated"], rollout["dones"], config.gamma, config.gae_lambda)
    advantages, returns = advantages.reshape(-1), returns.reshape(-1)
    if keep is not None:
        advantages, returns = advantages[keep], returns[keep]
    samples = inputs | {"logprobs": logprobs, "values": kept_values, "advantages": advantages, "returns": returns}
    if keep is None and rollout.mask is not None:
        samples["mask"] = flat["mask"]
    return samples, lambda epoch: first_order if epoch == 0 else draw_order()


def score_in_minibatches(engine, inputs: dict[str, np.ndarray], order: np.ndarray, minibatch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-probs and values of every sample (``inputs``: obs, actions and the ``POLICY_INPUTS`` there are),
    computed in the first epoch's minibatch layout.

    The first minibatch of the update then repeats exactly this computation (same rows, same batch
    shape), so its probability ratio is exactly 1: matrix kernels may round a row differently
    depending on the batch it sits in.
    """
    count = len(inputs["obs"])
    logprobs = np.empty(count, dtype=np.float32)
    values = np.empty(count, dtype=np.float32)
    for start in range(0, count, minibatch_size):
        index = order[start : start + minibatch_size]
        rows = {name: array[index] for name, array in inputs.items()}
        logprobs[index], values[index] = engine.score(rows.pop("obs"), rows.pop("actions"), **rows)
    return logprobs, values
