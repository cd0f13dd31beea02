"""A user's own torch module, named from the command line in tests (module=user_networks:cartpole_module)."""

import torch
from torch import nn


class TinyActorCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.Tanh())
        self.pi = nn.Linear(16, 2)
        self.v = nn.Linear(16, 1)

    def forward(self, obs: torch.Tensor):
        hidden = self.body(obs)
        return self.pi(hidden), self.v(hidden).squeeze(-1)


def cartpole_module() -> nn.Module:
    return TinyActorCritic()
