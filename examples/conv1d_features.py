"""A new network kind for ppokit in one file: a 1-D convolution over a sequence observation, as a features extractor.

Register it and pick it by name (``features_extractor: conv1d``), or name the class directly from the command line:

    ppokit train CartPole-v1 --no-preset features_extractor=examples.conv1d_features:Conv1dFeatures

The policy and value heads (``hidden_sizes``), an LSTM on top (``policy: lstm``), saving and loading come with it.
"""

from torch import nn

from ppokit.gym.policies.features import register_features


class Conv1dFeatures(nn.Module):
    """Observations [B, L] read as one channel of length L: 8 filters of width 3, then flattened."""

    def __init__(self, observation_space, encoder, config, channels: int = 8):
        super().__init__()
        length = encoder.size
        self.conv = nn.Sequential(nn.Conv1d(1, channels, kernel_size=3, padding=1), nn.ReLU(), nn.Flatten())
        self.features_size = channels * length  # what the heads take

    def forward(self, obs):
        return self.conv(obs.unsqueeze(1))


register_features("conv1d", Conv1dFeatures)
