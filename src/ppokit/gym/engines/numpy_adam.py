"""Adam over one flat float32 parameter buffer: a handful of whole-array operations per step.

Follows torch.optim.Adam's arithmetic (bias corrections folded into the step size and the
denominator, epsilon added after the square root), so both engines optimize alike.
"""

from __future__ import annotations

import numpy as np


class FlatAdam:
    def __init__(self, params: np.ndarray, grad: np.ndarray, lr: float, eps: float = 1e-8, betas: tuple[float, float] = (0.9, 0.999)):
        self.params = params
        self.grad = grad
        self.lr = lr
        self.eps = eps
        self.beta1, self.beta2 = betas
        self.exp_avg = np.zeros_like(params)
        self.exp_avg_sq = np.zeros_like(params)
        self.steps = 0
        self._scratch = np.empty_like(params)

    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.beta1, self.beta2
        self.exp_avg *= beta1
        self.exp_avg += (1.0 - beta1) * self.grad
        self.exp_avg_sq *= beta2
        np.multiply(self.grad, self.grad, out=self._scratch)
        self._scratch *= 1.0 - beta2
        self.exp_avg_sq += self._scratch
        bias_correction1 = 1.0 - beta1**self.steps
        bias_correction2_sqrt = (1.0 - beta2**self.steps) ** 0.5
        denom = np.sqrt(self.exp_avg_sq, out=self._scratch)
        denom /= bias_correction2_sqrt
        denom += self.eps
        # params -= (lr / bc1) * exp_avg / denom
        np.divide(self.exp_avg, denom, out=denom)
        denom *= self.lr / bias_correction1
        self.params -= denom

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": np.array(self.steps, dtype=np.int64)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        np.copyto(self.exp_avg, state["exp_avg"])
        np.copyto(self.exp_avg_sq, state["exp_avg_sq"])
        self.steps = int(state["steps"])
