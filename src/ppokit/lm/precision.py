"""The ``precision`` key of the language-model trainers: which dtype the weights are kept in, which one
the forward passes compute in, and whether the loss is scaled.

- ``fp32``: everything in float32.
- ``bf16-mixed``: float32 weights and optimizer state, forward passes autocast to bfloat16.
- ``fp16-mixed``: the same with float16 and a dynamic loss scale (CUDA only).
- ``bf16``: weights (and so the optimizer state) in bfloat16, for memory.
- ``auto``: bf16-mixed on a CUDA GPU that supports bfloat16, fp16-mixed on one that does not, fp32 elsewhere.

Whatever the setting, log-probabilities, the PPO ratio, values and losses are computed in float32
(``sequences.token_logprobs`` casts the logits first).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ppokit.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16-mixed", "fp16-mixed", "bf16")
INFERENCE_DTYPES = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    name: str  # resolved: never "auto"
    device: torch.device

    @classmethod
    def resolve(cls, name: str, device: torch.device) -> Precision:
        if name not in PRECISIONS:
            raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {name!r}")
        if name == "auto":
            if device.type == "cuda":
                name = "bf16-mixed" if torch.cuda.is_bf16_supported() else "fp16-mixed"
            else:
                name = "fp32"
        if name == "fp16-mixed" and device.type != "cuda":
            raise ConfigError(f"precision='fp16-mixed' needs a CUDA device (its loss scaling is CUDA's), but device is {device}; "
                              "use bf16-mixed or fp32")
        return cls(name, device)

    @property
    def weights_dtype(self) -> torch.dtype:
        """The dtype trained weights (and the optimizer's moments) are kept in."""
        return torch.bfloat16 if self.name == "bf16" else torch.float32

    @property
    def compute_dtype(self) -> torch.dtype | None:
        return {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}.get(self.name)

    def autocast(self):
        """The context every forward pass runs in (a no-op unless the precision is mixed)."""
        if self.compute_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(self.device.type) if self.name == "fp16-mixed" else None

    def inference_dtype(self, setting: str) -> torch.dtype:
        """The dtype of models that never train (reference, reward model): ``auto`` is the trained weights' dtype."""
        if setting not in INFERENCE_DTYPES:
            raise ConfigError(f"inference_dtype must be one of {list(INFERENCE_DTYPES)}, got {setting!r}")
        return self.weights_dtype if setting == "auto" else DTYPES[setting]
