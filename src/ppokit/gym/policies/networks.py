"""The torch building blocks of every ppokit network: the activation table, orthogonal init, the MLP, and the
actor-critic that puts a features extractor, an optional LSTM and the policy and value heads together.

A torch policy is ``ActorCriticNetwork(features, ...)``: the features extractor (``ppokit.gym.policies.features``)
turns a batch of prepared observations into feature vectors, ``recurrent`` puts an LSTM on top
(``ppokit.gym.policies.recurrent``), and two MLP heads of ``hidden_sizes`` give the distribution parameters
and the value. The numpy engine keeps its own MLP (``numpy_mlp``) as the fast path; the torch engine trains
this one, over the numpy store's buffer when the numpy policy is trained with engine 'torch'.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
HIDDEN_GAIN = math.sqrt(2)
POLICY_HEAD_GAIN = 0.01
VALUE_HEAD_GAIN = 1.0


def orthogonal(layer: nn.Module, gain: float) -> nn.Module:
    """Orthogonal weights times ``gain``, zero biases (Saxe et al. 2013; the PPO implementations' init)."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(in_size: int, hidden_sizes: list[int], activation: str, out_size: int, head_gain: float, ortho_init: bool = True) -> nn.Sequential:
    """Linear layers at the even indices of a Sequential, the activation between them ("actor.0.weight", ...):
    the layout the numpy store and saved models name."""
    layers: list[nn.Module] = []
    sizes = [in_size, *hidden_sizes]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layer = nn.Linear(fan_in, fan_out)
        layers += [orthogonal(layer, HIDDEN_GAIN) if ortho_init else layer, ACTIVATIONS[activation]()]
    head = nn.Linear(sizes[-1], out_size)
    layers.append(orthogonal(head, head_gain) if ortho_init else head)
    return nn.Sequential(*layers)


def share_weights(network: nn.Sequential, layers: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> nn.Sequential:
    """Make the Linear layers of ``network`` views of numpy arrays (the numpy store's): what autograd trains is
    at once what numpy acting and the saved model see."""
    linears = [module for module in network if isinstance(module, nn.Linear)]
    for linear, (weight, bias, _, _) in zip(linears, layers, strict=True):
        linear.weight = nn.Parameter(torch.from_numpy(weight))
        linear.bias = nn.Parameter(torch.from_numpy(bias))
    return network


class ActorCriticNetwork(nn.Module):
    """features -> (an LSTM) -> policy head and value head: ``forward(obs) -> (distribution parameters [B, P], values [B])``.

    ``heads_hidden_sizes`` are the hidden widths of both heads ([] for one linear layer each, as the Nature CNN's).
    """

    recurrent = False

    def __init__(self, features: nn.Module, feature_size: int, heads_hidden_sizes: list[int], activation: str, action_param_size: int,
                 ortho_init: bool = True):
        super().__init__()
        self.features = features
        self.build_heads(feature_size, heads_hidden_sizes, activation, action_param_size, ortho_init)

    def build_heads(self, in_size: int, hidden_sizes: list[int], activation: str, action_param_size: int, ortho_init: bool) -> None:
        # the actor's weights are drawn before the critic's: the order every saved seed was trained in
        self.actor = mlp(in_size, hidden_sizes, activation, action_param_size, POLICY_HEAD_GAIN, ortho_init)
        self.critic = mlp(in_size, hidden_sizes, activation, 1, VALUE_HEAD_GAIN, ortho_init)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.features(obs)
        return self.actor(hidden), self.critic(hidden).squeeze(-1)
