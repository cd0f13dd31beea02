"""The policy's numbers: every trainable weight in one float32 buffer, plus float64 normalizer statistics.

Both compute engines work on this one store. The numpy engine reads and writes the buffer directly
(one Adam step and one norm over all weights are then single array operations); the torch engine
wraps views of it as nn.Parameters. Names follow the torch state-dict convention ("actor.0.weight"),
which is also how model.safetensors names them.
"""

from __future__ import annotations

import math

import numpy as np

from ppokit.gym.policies.normalize import normalizer_statistics


def _mlp_layout(prefix: str, in_size: int, hidden_sizes: list[int], out_size: int) -> list[tuple[str, tuple[int, ...]]]:
    # Linear layers sit at even indices of an nn.Sequential that alternates Linear and activation.
    sizes = [in_size, *hidden_sizes, out_size]
    layout = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layout += [(f"{prefix}.{2 * i}.weight", (fan_out, fan_in)), (f"{prefix}.{2 * i}.bias", (fan_out,))]
    return layout


def orthogonal(shape: tuple[int, int], gain: float, rng: np.random.Generator) -> np.ndarray:
    """A (rows, cols) matrix with orthonormal rows or columns, times ``gain`` (Saxe et al. 2013)."""
    rows, cols = shape
    flat = rng.standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))  # makes the decomposition unique, so q is uniformly distributed
    if rows < cols:
        q = q.T
    return (gain * q).astype(np.float32)


class PolicyParameters:
    """Actor and critic MLP weights (and log-std for Gaussian actions) in one flat buffer with named views."""

    def __init__(self, obs_size: int, hidden_sizes: list[int], action_param_size: int, continuous: bool, stats_size: int | None = None):
        """``stats_size``: how many columns observation normalization covers (default: all ``obs_size``)."""
        self.obs_size = obs_size
        self.hidden_sizes = list(hidden_sizes)
        self.layout = _mlp_layout("actor", obs_size, hidden_sizes, action_param_size)
        self.layout += _mlp_layout("critic", obs_size, hidden_sizes, 1)
        if continuous:
            self.layout.append(("log_std", (action_param_size,)))
        total = sum(math.prod(shape) for _, shape in self.layout)
        self.flat = np.zeros(total, dtype=np.float32)
        self.grad = np.zeros(total, dtype=np.float32)
        self.views: dict[str, np.ndarray] = {}
        self.grad_views: dict[str, np.ndarray] = {}
        offset = 0
        for name, shape in self.layout:
            size = math.prod(shape)
            self.views[name] = self.flat[offset : offset + size].reshape(shape)
            self.grad_views[name] = self.grad[offset : offset + size].reshape(shape)
            offset += size
        self.stats = normalizer_statistics(obs_size if stats_size is None else stats_size)

    def layers(self, prefix: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """(weight, bias, weight grad, bias grad) views of one network, input layer first."""
        names = [name[: -len(".weight")] for name, _ in self.layout if name.startswith(prefix + ".") and name.endswith(".weight")]
        return [(self.views[f"{n}.weight"], self.views[f"{n}.bias"], self.grad_views[f"{n}.weight"], self.grad_views[f"{n}.bias"]) for n in names]

    def initialize(self, rng: np.random.Generator, ortho_init: bool, log_std_init: float) -> None:
        """Orthogonal weights with gain sqrt(2) in hidden layers, 0.01 on the policy head, 1 on the value head."""
        for prefix, head_gain in (("actor", 0.01), ("critic", 1.0)):
            layers = self.layers(prefix)
            for i, (weight, bias, _, _) in enumerate(layers):
                if ortho_init:
                    gain = head_gain if i == len(layers) - 1 else math.sqrt(2)
                    weight[...] = orthogonal(weight.shape, gain, rng)
                    bias[...] = 0.0
                else:
                    # the default of torch.nn.Linear: uniform in +-1/sqrt(fan_in)
                    bound = 1.0 / math.sqrt(weight.shape[1])
                    weight[...] = rng.uniform(-bound, bound, weight.shape)
                    bias[...] = rng.uniform(-bound, bound, bias.shape)
        if "log_std" in self.views:
            self.views["log_std"][...] = log_std_init

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every saved array by name: views (not copies) of the weights and the statistics."""
        return {**self.views, **self.stats}

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy arrays in place (shapes and dtypes checked by the caller), so every view stays valid."""
        for name, target in self.state_dict().items():
            np.copyto(target, arrays[name])
