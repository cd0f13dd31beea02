"""Log-probabilities and entropies with autograd, for the torch engine: the same distributions as
``ppokit.gym.policies.distributions`` (which samples and runs the numpy engine's maths), in torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ppokit.gym.policies.distributions import Bernoulli, Categorical, DiagGaussian, MultiCategorical, gaussian_entropy, gaussian_log_prob, mask_logits


def log_prob_entropy(dist, params: torch.Tensor, actions: torch.Tensor, log_std: torch.Tensor | None, action_masks: torch.Tensor | None = None):
    """(log-probs of ``actions``, entropies) for each supported distribution; for (Multi)Discrete actions, under
    ``action_masks`` (False: invalid, probability 0)."""
    if isinstance(dist, (Categorical, MultiCategorical)):
        params = mask_logits(params, action_masks)
        sizes = [p.param_size for p in dist.parts] if isinstance(dist, MultiCategorical) else [dist.param_size]
        columns = actions.long().reshape(actions.shape[0], -1)
        logprob, entropy = 0.0, 0.0
        for i, part in enumerate(torch.split(params, sizes, dim=-1)):
            log_probs = F.log_softmax(part, dim=-1)
            logprob = logprob + log_probs.gather(-1, columns[:, i : i + 1]).squeeze(-1)
            entropy = entropy - (log_probs.exp() * log_probs).sum(-1)
        return logprob, entropy
    if isinstance(dist, Bernoulli):
        logprob = -F.binary_cross_entropy_with_logits(params, actions, reduction="none").sum(-1)
        entropy = F.binary_cross_entropy_with_logits(params, torch.sigmoid(params), reduction="none").sum(-1)
        return logprob, entropy
    if isinstance(dist, DiagGaussian):
        logprob, _, _ = gaussian_log_prob(params, actions, log_std, torch.exp)
        return logprob, gaussian_entropy(log_std).expand(params.shape[:-1])
    raise TypeError(f"no torch log-probability for {type(dist).__name__}")
