"""A search space: for each PPOConfig key, the Optuna distribution it is sampled from (read from YAML).

    learning_rate: {type: float, low: 1.0e-5, high: 3.0e-3, log: true}
    n_epochs: {type: categorical, choices: [1, 5, 10, 20]}

Categorical choices may be lists (layer sizes): Optuna stores only scalars, so a list choice is kept
as its JSON text in the study and turned back into the list for the config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ppokit.config import _suggest, load_yaml
from ppokit.errors import ConfigError

DEFAULT_SEARCH_SPACE = Path(__file__).with_name("default_search_space.yaml")
# the fields each distribution takes (required, optional), as trial.suggest_float / suggest_int / suggest_categorical name them
DISTRIBUTIONS = {"float": ({"low", "high"}, {"log", "step"}), "int": ({"low", "high"}, {"log", "step"}), "categorical": ({"choices"}, set())}
# keys a trial cannot change: the study fixes them for every trial
FIXED_KEYS = ("seed", "total_steps", "eval_interval", "eval_episodes", "checkpoint_interval", "tensorboard")


@dataclass(frozen=True)
class Dimension:
    key: str
    kind: str
    spec: dict[str, Any]

    def sample(self, trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, float(self.spec["low"]), float(self.spec["high"]), log=bool(self.spec.get("log", False)),
                                       step=self.spec.get("step"))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.spec["low"]), int(self.spec["high"]), step=int(self.spec.get("step", 1)),
                                     log=bool(self.spec.get("log", False)))
        stored = [json.dumps(c) if isinstance(c, (list, dict)) else c for c in self.spec["choices"]]
        chosen = trial.suggest_categorical(self.key, stored)
        return self.from_stored(chosen)

    def from_stored(self, value: Any) -> Any:
        """A value as the study stores it -> the config's value (a list choice back from its JSON text)."""
        if self.kind == "categorical" and isinstance(value, str) and any(isinstance(c, (list, dict)) for c in self.spec["choices"]):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value


def load_search_space(path: str | Path | None = None) -> list[Dimension]:
    """The dimensions of a search-space YAML file (default: the shipped one), each checked against PPOConfig."""
    from ppokit.gym.config import PPOConfig

    path = Path(path) if path is not None else DEFAULT_SEARCH_SPACE
    data = load_yaml(path, "search space")
    if not data:
        raise ConfigError(f"search space {str(path)!r} must map config keys to distributions, "
                          "e.g. learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}")
    known = set(PPOConfig.field_names())
    dimensions = []
    for key, spec in data.items():
        where = f"search space {str(path)!r}, key {key!r}"
        if key not in known:
            raise ConfigError(f"{where}: not a config key of ppokit train{_suggest(str(key), sorted(known))} (see `ppokit keys train`)")
        if key in FIXED_KEYS:
            raise ConfigError(f"{where}: the study sets {key} for every trial (use --seeds, --total-steps, --eval-episodes); leave it out of the space")
        if not isinstance(spec, dict) or "type" not in spec:
            raise ConfigError(f"{where}: expected a mapping with a 'type' ({', '.join(DISTRIBUTIONS)}), got {spec!r}")
        kind = spec["type"]
        if kind not in DISTRIBUTIONS:
            raise ConfigError(f"{where}: distribution {kind!r} is not one of Optuna's: {', '.join(DISTRIBUTIONS)} "
                              f"(suggest_float, suggest_int, suggest_categorical)")
        required, optional = DISTRIBUTIONS[kind]
        fields = set(spec) - {"type"}
        if required - fields or fields - required - optional:
            raise ConfigError(f"{where}: a {kind} distribution takes {', '.join(sorted(required))}"
                              f"{' and optionally ' + ', '.join(sorted(optional)) if optional else ''}; got {', '.join(sorted(fields)) or 'nothing'}")
        if kind == "categorical" and (not isinstance(spec["choices"], list) or not spec["choices"]):
            raise ConfigError(f"{where}: choices must be a non-empty list, got {spec['choices']!r}")
        if kind != "categorical":
            if not all(isinstance(spec[b], (int, float)) and not isinstance(spec[b], bool) for b in ("low", "high")) or spec["low"] >= spec["high"]:
                raise ConfigError(f"{where}: low and high must be numbers with low < high, got low={spec['low']!r}, high={spec['high']!r}")
            if spec.get("log") and spec["low"] <= 0:
                raise ConfigError(f"{where}: a log distribution needs low > 0, got {spec['low']!r}")
        dimensions.append(Dimension(str(key), kind, dict(spec)))
    return dimensions


def make_consistent(values: dict[str, Any], total_steps: int) -> dict[str, Any]:
    """Keys sampled apart that must agree: one rollout (n_envs * n_steps) fits in the budget, and a minibatch
    is at most one rollout. (An LSTM's chunk length is chosen from both by its default, 0.)"""
    values = dict(values)
    values["n_steps"] = max(1, min(int(values["n_steps"]), total_steps // int(values["n_envs"])))
    rollout = int(values["n_envs"]) * int(values["n_steps"])
    if int(values["minibatch_size"]) > rollout:
        values["minibatch_size"] = rollout
    return values
