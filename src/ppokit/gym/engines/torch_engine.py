"""The torch engine: the policy as an nn.Module over the shared parameter store, trained by ppokit.core.

This is the reference path: autograd and ``ppokit.core.ppo_update``, the same loss code the
language-model front end uses. Its nn.Parameters are views of the PolicyParameters buffer, so
whatever it learns is immediately what the numpy acting code and the saved model see.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ppokit.core import UpdateSettings, ppo_update
from ppokit.distributed import World
from ppokit.gym.policies.networks import POLICY_HEAD_GAIN, VALUE_HEAD_GAIN, mlp, share_weights
from ppokit.gym.policies.numpy_params import PolicyParameters
from ppokit.gym.policies.protocol import POLICY_INPUTS
from ppokit.gym.policies.torch_distributions import log_prob_entropy


class StoreActorCritic(nn.Module):
    """The numpy MLP policy as a torch network: ``networks.mlp`` actor and critic whose weights are views of the
    numpy store (``PolicyParameters``), plus the log-std of Gaussian actions."""

    def __init__(self, params: PolicyParameters, dist, activation: str):
        super().__init__()
        self.dist = dist
        with torch.device("meta"):  # shapes only: the weights are the store's, and torch's random state is left alone
            actor = mlp(params.obs_size, params.hidden_sizes, activation, dist.param_size, POLICY_HEAD_GAIN, ortho_init=False)
            critic = mlp(params.obs_size, params.hidden_sizes, activation, 1, VALUE_HEAD_GAIN, ortho_init=False)
        self.actor = share_weights(actor, params.layers("actor"))
        self.critic = share_weights(critic, params.layers("critic"))
        self.log_std = nn.Parameter(torch.from_numpy(params.views["log_std"])) if "log_std" in params.views else None

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, action_masks: torch.Tensor | None = None):
        """(log-probs of the given actions, entropies, values), with gradients."""
        logprob, entropy = log_prob_entropy(self.dist, self.actor(obs), actions, self.log_std, action_masks)
        return logprob, entropy, self.critic(obs).squeeze(-1)


class TorchEngine:
    """Trains a model that has ``evaluate_actions(obs, actions)`` and ``parameters()``: the MLP over the
    shared numpy buffer (``StoreActorCritic``) or a ``TorchPolicy`` (CNN, torch MLP, a user's module)."""

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
        return cls(StoreActorCritic(params, dist, activation), learning_rate, adam_eps, threads, world)

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
