"""Training callbacks: anything with ``on_update(metrics)``; returning False stops training cleanly
(a checkpoint is written first). Plain functions of the metrics are accepted too."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Callback(Protocol):
    def on_update(self, metrics: dict[str, float]) -> bool | None: ...


class _FunctionCallback:
    def __init__(self, function):
        self.function = function

    def on_update(self, metrics):
        return self.function(metrics)


def as_callbacks(callback: Any) -> list[Callback]:
    """None, a function, an object with on_update, or a list of those -> a list of callbacks."""
    if callback is None:
        return []
    items = callback if isinstance(callback, (list, tuple)) else [callback]
    result = []
    for item in items:
        if hasattr(item, "on_update"):
            result.append(item)
        elif callable(item):
            result.append(_FunctionCallback(item))
        else:
            raise TypeError(f"a callback must be a function of the metrics or have on_update(metrics); got {type(item).__name__}")
    return result


class BestModelSaver:
    """Every ``interval`` updates, evaluates the policy deterministically and saves it to ``directory``
    when its mean return beats the best so far. Adds eval/mean_return and eval/best_return to the metrics."""

    def __init__(self, agent, directory: Path, interval: int, episodes: int):
        self.agent = agent
        self.directory = Path(directory)
        self.interval = interval
        self.episodes = episodes

    def on_update(self, metrics: dict[str, float]) -> None:
        if self.agent.num_updates % self.interval != 0:
            return None
        from ppokit.gym.evaluate import evaluate_policy

        mean_return = float(np.mean(evaluate_policy(self.agent, episodes=self.episodes, deterministic=True)))
        metrics["eval/mean_return"] = mean_return
        if self.agent.best_eval_return is None or mean_return > self.agent.best_eval_return:
            self.agent.best_eval_return = mean_return
            self.agent.save(self.directory)
        metrics["eval/best_return"] = self.agent.best_eval_return
        self.agent.logger.message(f"evaluation at update {self.agent.num_updates}: mean return {mean_return:.2f} (best {self.agent.best_eval_return:.2f})")
        return None
