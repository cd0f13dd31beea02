"""Schedules for the learning rate and the clip range, as functions of training progress in [0, 1]."""

from __future__ import annotations

from collections.abc import Callable

Schedule = Callable[[float], float]


def constant(value: float) -> Schedule:
    return lambda progress: value


def linear(start: float, end: float = 0.0) -> Schedule:
    """Linear from ``start`` at progress 0 to ``end`` at progress 1 (rl-baselines3-zoo's ``lin_X``)."""
    return lambda progress: start + (end - start) * min(max(progress, 0.0), 1.0)


def make_schedule(kind: str, value: float) -> Schedule:
    if kind == "constant":
        return constant(value)
    if kind == "linear":
        return linear(value)
    raise ValueError(f"unknown schedule {kind!r}; expected 'constant' or 'linear'")


class FixedKLController:
    """A constant KL-penalty coefficient."""

    def __init__(self, coef: float):
        self.value = coef

    def update(self, current_kl: float, num_samples: int) -> float:
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Proportional control of the KL coefficient toward a target KL (Ziegler et al., 2019).

    After each batch the coefficient is multiplied by 1 + e * num_samples / horizon, where the error
    e = clip(KL / target - 1, -0.2, 0.2): too much KL raises the penalty, too little lowers it.
    """

    def __init__(self, init_coef: float, target: float, horizon: int):
        self.value = init_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, num_samples: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * num_samples / self.horizon
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
