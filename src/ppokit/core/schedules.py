"""Schedules for the learning rate and the clip range, as functions of training progress in [0, 1]."""

from __future__ import annotations

from typing import Callable

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
