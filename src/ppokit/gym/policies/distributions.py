"""Action distributions for each supported action space, in numpy.

Each turns the actor's output ("params") into sampled actions, the mode, and the log-probabilities
and entropies of given actions together with their gradients (for the numpy engine, which has no
autograd). Sampled actions are stored unclipped; only ``to_env`` clips Box actions to the bounds.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from ppokit.gym.envs.spaces import check_action_space

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
# the logit of an invalid action: its probability underflows to exactly 0, and 0 * log-prob stays 0 (-inf would give NaN)
MASKED_LOGIT = -1e9


def mask_logits(logits, mask):
    """Logits with invalid actions (``mask`` False) at MASKED_LOGIT; ``mask`` None: all valid.

    Works on numpy arrays and torch tensors alike. A masked logit is a constant, so no gradient
    reaches it, and the entropy and log-probs are those of the distribution over the valid actions.
    """
    if mask is None:
        return logits
    if isinstance(logits, np.ndarray):
        return np.where(mask, logits, np.float32(MASKED_LOGIT)).astype(logits.dtype, copy=False)
    return logits.masked_fill(~mask, MASKED_LOGIT)


def _column(x):
    # per-sample weights arrive as [n] arrays or as one scalar for the whole batch
    return x[:, None] if isinstance(x, np.ndarray) else x


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


class Categorical:
    supports_masks = True

    def __init__(self, space: gym.spaces.Discrete):
        self.param_size = int(space.n)
        self.action_shape: tuple[int, ...] = ()
        self.action_dtype = np.int64
        self._start = int(space.start)

    def sample(self, logits, rng, log_std=None):
        # Gumbel-max: argmax(logits + Gumbel noise) is an exact categorical sample, in two array
        # operations instead of softmax, cumulative sum and search (a quarter of the time per step)
        return (logits + rng.gumbel(size=logits.shape)).argmax(-1)

    def mode(self, logits):
        return logits.argmax(-1)

    def log_prob_entropy(self, logits, actions, log_std=None):
        """(log-probs, entropies, cache for ``grad``)."""
        log_probs = _log_softmax(logits)
        probs = np.exp(log_probs)
        entropy = -(probs * log_probs).sum(-1)
        chosen = np.take_along_axis(log_probs, actions[:, None], axis=-1)[:, 0]
        return chosen, entropy, (probs, log_probs, entropy)

    def grad(self, cache, actions, grad_logprob, grad_entropy):
        """d(loss)/d(logits) given d(loss)/d(log-prob) and d(loss)/d(entropy) per sample; no log-std."""
        probs, log_probs, entropy = cache
        # d entropy / d logit_j = -p_j (log p_j + H);  d log p_a / d logit_j = [j = a] - p_j
        grad = probs * (-(log_probs + entropy[:, None]) * _column(grad_entropy) - _column(grad_logprob))
        grad[np.arange(len(actions)), actions] += grad_logprob
        return grad, None

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions + self._start if self._start else actions


class MultiCategorical:
    """Independent categoricals, one per MultiDiscrete dimension; log-probs and entropies add up."""

    supports_masks = True

    def __init__(self, space: gym.spaces.MultiDiscrete):
        self.parts = [Categorical(gym.spaces.Discrete(int(n))) for n in space.nvec]
        self.param_size = sum(p.param_size for p in self.parts)
        self.action_shape = (len(self.parts),)
        self.action_dtype = np.int64
        self._splits = np.cumsum([p.param_size for p in self.parts])[:-1]
        self._start = np.asarray(space.start)

    def sample(self, logits, rng, log_std=None):
        return np.stack([p.sample(x, rng) for p, x in zip(self.parts, np.split(logits, self._splits, -1))], -1)

    def mode(self, logits):
        return np.stack([x.argmax(-1) for x in np.split(logits, self._splits, -1)], -1)

    def log_prob_entropy(self, logits, actions, log_std=None):
        results = [p.log_prob_entropy(x, actions[:, i]) for i, (p, x) in enumerate(zip(self.parts, np.split(logits, self._splits, -1)))]
        return sum(r[0] for r in results), sum(r[1] for r in results), [r[2] for r in results]

    def grad(self, cache, actions, grad_logprob, grad_entropy):
        grads = [p.grad(c, actions[:, i], grad_logprob, grad_entropy)[0] for i, (p, c) in enumerate(zip(self.parts, cache))]
        return np.concatenate(grads, -1), None

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions + self._start if self._start.any() else actions


class Bernoulli:
    """Independent binary decisions, one per MultiBinary dimension."""

    supports_masks = False

    def __init__(self, space: gym.spaces.MultiBinary):
        self.param_size = int(space.shape[0])
        self.action_shape = (self.param_size,)
        self.action_dtype = np.float32

    def sample(self, logits, rng, log_std=None):
        probs = 1.0 / (1.0 + np.exp(-logits))
        return (rng.random(logits.shape, dtype=np.float32) < probs).astype(np.float32)

    def mode(self, logits):
        return (logits > 0).astype(np.float32)

    def log_prob_entropy(self, logits, actions, log_std=None):
        softplus = np.logaddexp(0.0, logits)  # -log(1 - p)
        probs = 1.0 / (1.0 + np.exp(-logits))
        logprob = (actions * logits - softplus).sum(-1)
        entropy = (softplus - probs * logits).sum(-1)
        return logprob, entropy, (probs, logits)

    def grad(self, cache, actions, grad_logprob, grad_entropy):
        # d log p(a) / d l = a - p;  d H / d l = -l p (1 - p)
        probs, logits = cache
        grad = (actions - probs) * _column(grad_logprob) - logits * probs * (1.0 - probs) * _column(grad_entropy)
        return grad.astype(np.float32), None

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions.astype(np.int8)


class DiagGaussian:
    """Gaussian with a state-independent log-std (a policy parameter, passed in as ``log_std``)."""

    supports_masks = False

    def __init__(self, space: gym.spaces.Box):
        self.param_size = int(np.prod(space.shape))
        self.action_shape = tuple(space.shape)
        self.action_dtype = np.float32
        self._low = space.low.astype(np.float32)
        self._high = space.high.astype(np.float32)
        self._bounded = bool(np.all(np.isfinite(self._low)) and np.all(np.isfinite(self._high)))
        self._env_dtype = space.dtype

    def sample(self, mean, rng, log_std):
        return mean + np.exp(log_std) * rng.standard_normal(mean.shape, dtype=np.float32)

    def mode(self, mean):
        return mean

    def log_prob_entropy(self, mean, actions, log_std):
        logprob, z, inv_std = gaussian_log_prob(mean, actions, log_std, np.exp)
        entropy = np.full(mean.shape[0], gaussian_entropy(log_std), dtype=mean.dtype)
        return logprob, entropy, (z, inv_std)

    def grad(self, cache, actions, grad_logprob, grad_entropy):
        """(d loss / d mean, d loss / d log-std)."""
        z, inv_std = cache
        column = _column(grad_logprob)
        grad_mean = column * z * inv_std
        # d log p / d log-std = z^2 - 1; each sample's entropy grows by 1 per unit of log-std
        grad_log_std = (column * (z * z - 1.0)).sum(0) if isinstance(grad_logprob, np.ndarray) else grad_logprob * (z * z - 1.0).sum(0)
        entropy_total = grad_entropy.sum() if isinstance(grad_entropy, np.ndarray) else grad_entropy * z.shape[0]
        return grad_mean, grad_log_std + entropy_total

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        actions = actions.reshape(actions.shape[0], *self.action_shape)
        if self._bounded:
            actions = np.clip(actions, self._low, self._high)
        return actions.astype(self._env_dtype, copy=False)


def gaussian_log_prob(mean, actions, log_std, exp):
    """Per-row log-density of ``actions`` under N(mean, exp(log_std)^2), with the standardized actions z and 1/std:
    the one formula for numpy arrays (``exp=np.exp``, the numpy engine) and torch tensors (``torch.exp``, autograd)."""
    inv_std = exp(-log_std)
    z = (actions.reshape(mean.shape) - mean) * inv_std
    return (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(-1), z, inv_std


def gaussian_entropy(log_std):
    """The entropy of one row (it does not depend on the mean)."""
    return (0.5 + _LOG_SQRT_2PI + log_std).sum(-1)


def make_distribution(space: gym.Space):
    check_action_space(space)
    if isinstance(space, gym.spaces.Discrete):
        return Categorical(space)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return MultiCategorical(space)
    if isinstance(space, gym.spaces.MultiBinary):
        return Bernoulli(space)
    return DiagGaussian(space)
