"""Recurrent policies (``policy: lstm``): an LSTM between the observation encoder and the actor and critic MLPs.

The memory of every env copy is one float32 row, ``[h, c]`` of the LSTM (``[h, c]`` of the actor's
then the critic's with ``lstm_shared: false``); a zero row is the state at an episode's start, so the
rollout resets a copy's memory by zeroing its row. The rollout stores each step's state; the update
replays chunks of ``lstm_sequence_length`` consecutive steps of one env copy, each from the state stored
at its first step, resetting the memory where an episode starts (truncated backpropagation through time,
as sb3-contrib's RecurrentPPO replays sequences from stored states; a chunk of the whole rollout is
CleanRL's ppo_atari_lstm).

Minibatch rows are chunk-major: row ``c * L + t`` is step t of the minibatch's c-th chunk
(``ppokit.gym.rollout.sequence_order``), so the micro-batches of gradient accumulation are whole chunks too.
"""

from __future__ import annotations

import torch
from torch import nn

from ppokit.gym.policies.networks import ActorCriticNetwork


class RecurrentActorCritic(ActorCriticNetwork):
    """features -> LSTM (one shared, or one for the actor and one for the critic) -> the policy and value heads."""

    recurrent = True

    def __init__(self, features: nn.Module, feature_size: int, config, action_param_size: int):
        nn.Module.__init__(self)
        self.features = features
        self.hidden_size = int(config.lstm_hidden_size)
        self.shared = bool(config.lstm_shared)
        self.sequence_length = int(config.sequence_length)
        self.lstm = _lstm(feature_size, self.hidden_size)
        self.critic_lstm = None if self.shared else _lstm(feature_size, self.hidden_size)
        self.build_heads(self.hidden_size, list(config.hidden_sizes), config.activation, action_param_size, config.ortho_init)
        self.state_size = 2 * self.hidden_size * (1 if self.shared else 2)

    def forward(self, obs: torch.Tensor):
        raise TypeError("a recurrent network runs through step(obs, state) and evaluate_sequences(...), which carry its memory")

    def step(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of B env copies: (distribution parameters [B, P], values [B], next state [B, state_size])."""
        params, values, next_state = self._run(self.features(obs)[None], torch.zeros(1, obs.shape[0]), state)
        return params[0], values[0], next_state

    def evaluate_sequences(self, obs: torch.Tensor, episode_starts: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A minibatch of chunks of consecutive steps in chunk-major rows: (parameters [C*L, P], values [C*L]).

        ``states`` holds each step's stored state; only the first step's of each chunk is read.
        """
        steps = self.sequence_length
        chunks = obs.shape[0] // steps
        features = self.features(obs).reshape(chunks, steps, -1).transpose(0, 1)
        starts = episode_starts.reshape(chunks, steps).transpose(0, 1)
        params, values, _ = self._run(features, starts, states.reshape(chunks, steps, -1)[:, 0])
        return params.transpose(0, 1).reshape(chunks * steps, -1), values.transpose(0, 1).reshape(-1)

    def _run(self, features: torch.Tensor, starts: torch.Tensor, state: torch.Tensor):
        """Time-major features [T, B, F] from ``state`` [B, S]: (params [T, B, P], values [T, B], final state)."""
        size = self.hidden_size
        actor_state = (state[:, :size], state[:, size : 2 * size])
        actor_out, actor_state = _unroll(self.lstm, features, starts, actor_state)
        if self.shared:
            critic_out, final = actor_out, actor_state
        else:
            critic_out, critic_state = _unroll(self.critic_lstm, features, starts, (state[:, 2 * size : 3 * size], state[:, 3 * size :]))
            final = (*actor_state, *critic_state)
        params = self.actor(actor_out)
        values = self.critic(critic_out).squeeze(-1)
        return params, values, torch.cat(final, dim=-1)


def _lstm(input_size: int, hidden_size: int) -> nn.LSTM:
    lstm = nn.LSTM(input_size, hidden_size)
    for name, param in lstm.named_parameters():  # orthogonal weights, zero biases (as CleanRL initializes it)
        if "weight" in name:
            nn.init.orthogonal_(param, 1.0)
        else:
            nn.init.zeros_(param)
    return lstm


def _unroll(lstm: nn.LSTM, features: torch.Tensor, starts: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
    """Run the LSTM over [T, B, F], zeroing a copy's memory at the steps where its episode starts.

    Between two steps where some episode starts the LSTM runs in one call; a rollout of long
    episodes is then a few calls, not one per step.
    """
    h, c = state[0][None], state[1][None]
    boundaries = [0, *[t for t in range(1, features.shape[0]) if bool(starts[t].any())], features.shape[0]]
    outputs = []
    for begin, end in zip(boundaries[:-1], boundaries[1:]):
        keep = (1.0 - starts[begin].to(features.dtype))[None, :, None]
        out, (h, c) = lstm(features[begin:end], (h * keep, c * keep))
        outputs.append(out)
    return torch.cat(outputs), (h[0], c[0])
