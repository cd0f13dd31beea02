"""The torch engine: the policy as an nn.Module over the shared parameter store, trained by ppokit.core.

This is the reference path: autograd and ``ppokit.core.ppo_update``, the same loss code the
language-model front end uses. Its nn.Parameters are views of the PolicyParameters buffer, so
whatever it learns is immediately what the numpy acting code and the saved model see.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ppokit.core import UpdateSettings, ppo_update
from ppokit.distributed import World
from ppokit.gym.actor_critic import POLICY_INPUTS
from ppokit.gym.distributions import Bernoulli, Categorical, DiagGaussian, MultiCategorical, mask_logits
from ppokit.gym.params import PolicyParameters

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _mlp(layers, activation: str) -> nn.Sequential:
    modules: list[nn.Module] = []
    for i, (weight, bias, _, _) in enumerate(layers):
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        # share memory with the store instead of owning a copy
        linear.weight = nn.Parameter(torch.from_numpy(weight))
        linear.bias = nn.Parameter(torch.from_numpy(bias))
        modules.append(linear)
        if i < len(layers) - 1:
            modules.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*modules)


def log_prob_entropy(dist, params: torch.Tensor, actions: torch.Tensor, log_std: torch.Tensor | None, action_masks: torch.Tensor | None = None):
    """(log-probs of ``actions``, entropies) with autograd, for each supported distribution; for
    (Multi)Discrete actions, under ``action_masks`` (False: invalid, probability 0)."""
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
        z = (actions.reshape(params.shape) - params) * torch.exp(-log_std)
        logprob = (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(-1)
        return logprob, (0.5 + _LOG_SQRT_2PI + log_std).sum(-1).expand(params.shape[:-1])
    raise TypeError(f"no torch log-probability for {type(dist).__name__}")


class TorchActorCritic(nn.Module):
    def __init__(self, params: PolicyParameters, dist, activation: str):
        super().__init__()
        self.dist = dist
        self.actor = _mlp(params.layers("actor"), activation)
        self.critic = _mlp(params.layers("critic"), activation)
        self.log_std = nn.Parameter(torch.from_numpy(params.views["log_std"])) if "log_std" in params.views else None

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, action_masks: torch.Tensor | None = None):
        """(log-probs of the given actions, entropies, values), with gradients."""
        logprob, entropy = log_prob_entropy(self.dist, self.actor(obs), actions, self.log_std, action_masks)
        return logprob, entropy, self.critic(obs).squeeze(-1)


class TorchEngine:
    """Trains a model that has ``evaluate_actions(obs, actions)`` and ``parameters()``: the MLP over the
    shared numpy buffer (``TorchActorCritic``) or a ``TorchPolicy`` (CNN, torch MLP, a user's module)."""

    name = "torch"

    def __init__(self, model, learning_rate: float, adam_eps: float, threads: int, world: World | None = None):
        torch.set_num_threads(threads)  # (nothing here draws random numbers: torch's global RNG is left alone)
        self.module = model
        self.world = world or World()
        # data parallel: DDP (which starts every rank from rank 0's weights) runs the update's forward passes
        self.ddp = DistributedDataParallel(EvaluateActions(model)) if self.world.distributed else None
        self.optimizer = torch.optim.Adam(list(model.parameters()), lr=learning_rate, eps=adam_eps, fused=True)

    @classmethod
    def for_parameters(cls, params: PolicyParameters, dist, activation: str, learning_rate: float, adam_eps: float, threads: int,
                       world: World | None = None) -> TorchEngine:
        """The engine over the numpy MLP's buffer: whatever it learns is at once what numpy acting sees."""
        return cls(TorchActorCritic(params, dist, activation), learning_rate, adam_eps, threads, world)

    def set_learning_rate(self, learning_rate: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate

    def state_dict(self) -> dict[str, np.ndarray]:
        """Adam's moments and step counts per parameter, as numpy arrays."""
        arrays = {}
        for i, param in enumerate(self.module.parameters()):
            for name, value in self.optimizer.state.get(param, {}).items():
                arrays[f"adam.{i}.{name}"] = value.detach().cpu().numpy()
        return arrays

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        for i, param in enumerate(self.module.parameters()):
            state = {name.split(".", 2)[2]: torch.from_numpy(array.copy()) for name, array in arrays.items() if name.startswith(f"adam.{i}.")}
            if state:
                self.optimizer.state[param] = state

    @torch.no_grad()
    def score(self, obs: np.ndarray, actions: np.ndarray, **inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log-probs, values); ``inputs``: the minibatch's ``POLICY_INPUTS`` (masks, sequence starts and states)."""
        extra = {name: torch.from_numpy(array) for name, array in inputs.items()}
        logprob, _, values = self.module.evaluate_actions(torch.from_numpy(obs), torch.from_numpy(actions), **extra)
        return logprob.numpy(), values.numpy()

    def update(self, samples: dict[str, np.ndarray], settings: UpdateSettings, order) -> dict[str, float]:
        tensors = {name: torch.from_numpy(array) for name, array in samples.items()}
        evaluate = self.ddp if self.ddp is not None else EvaluateActions(self.module)
        return ppo_update(
            lambda mb: evaluate(mb["obs"], mb["actions"], {name: mb[name] for name in POLICY_INPUTS if name in mb}),
            self.optimizer,
            self.module.parameters(),
            tensors,
            settings,
            order=lambda epoch: torch.from_numpy(order(epoch)),
            world=self.world,
            ddp_modules=[self.ddp] if self.ddp is not None else [],
        )


class EvaluateActions(nn.Module):
    """A model's evaluate_actions as its forward(): DistributedDataParallel synchronizes what forward() computes.

    The model may be an nn.Module or a TorchPolicy (a module plus a log-std): its parameters are listed here once.
    """

    def __init__(self, model):
        super().__init__()
        self.weights = nn.ParameterList(list(model.parameters()))
        self.__dict__["model"] = model  # not a submodule: its parameters are the list above

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, inputs: dict[str, torch.Tensor]):
        return self.model.evaluate_actions(obs, actions, **inputs)
