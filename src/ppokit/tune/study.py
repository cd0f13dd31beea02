"""One study of `ppokit tune`: an Optuna study in a database, trials that train PPO and report evaluations.

Each trial samples the search space over the base config (defaults < preset < --config < key=value),
trains one run per seed, evaluates it ``evaluations`` times at even points of its training (the
deterministic mean return of ``eval_episodes`` episodes), reports each evaluation so that the median
pruner can stop a trial that trails the others at the same point, and scores the mean over the seeds
of each run's last evaluations. A trial that raises (NaN, an env error, a config the sampled keys make
invalid) is recorded as failed with its message, and the study goes on.
"""

from __future__ import annotations

import os
import socket
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppokit.errors import ConfigError
from ppokit.tune.search_space import Dimension, make_consistent

# the evaluations averaged into a run's score: the last ones, so that one lucky evaluation does not decide
SCORED_EVALUATIONS = 3
# seeds of the evaluation episodes, apart from any training seed
EVAL_SEED = 50_000


@dataclass
class TuneSettings:
    env_id: str
    base: dict[str, Any]
    dimensions: list[Dimension]
    seeds: list[int] = field(default_factory=lambda: [0])
    total_steps: int = 100_000
    eval_episodes: int = 10
    evaluations: int = 10
    preset_name: str | None = None


def open_study(storage: str, study_name: str, sampler_seed: int | None = None):
    """The study named ``study_name`` in ``storage`` (created on first use): TPE sampler, median pruner, maximize."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # ppokit prints a line per trial itself
    try:
        return optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True,
                                   sampler=optuna.samplers.TPESampler(n_startup_trials=5, seed=sampler_seed),
                                   pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2))
    except ImportError:
        raise
    except Exception as exc:  # SQLAlchemy's errors for a URL it cannot open, a driver that is missing, a file it cannot create
        raise ConfigError(f"storage {storage!r} cannot be opened: {type(exc).__name__}: {exc} "
                          "(expected an SQLAlchemy URL such as sqlite:///tune.db or postgresql://user@host/db)") from None


def trial_config(settings: TuneSettings, sampled: dict[str, Any]) -> dict[str, Any]:
    """The config a trial trains with (its seed aside): the base config, the sampled keys, made consistent."""
    return make_consistent(settings.base | sampled, settings.total_steps) | {"total_steps": settings.total_steps}


class Objective:
    """Optuna's objective: trains the sampled config on every seed and returns its score."""

    def __init__(self, settings: TuneSettings):
        self.settings = settings

    def __call__(self, trial) -> float:
        import optuna

        sampled = {d.key: d.sample(trial) for d in self.settings.dimensions}
        config = trial_config(self.settings, sampled)
        trial.set_user_attr("config", {key: config[key] for key in sampled})  # as trained (a minibatch capped to the rollout)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            scores = [self._run(trial, config, index, seed) for index, seed in enumerate(self.settings.seeds)]
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise
        trial.set_user_attr("seed_scores", scores)
        return statistics.mean(scores)

    def _run(self, trial, config: dict[str, Any], seed_index: int, seed: int) -> float:
        import numpy as np
        import optuna

        from ppokit.gym.agent import PPO
        from ppokit.gym.evaluate import evaluate_policy

        settings = self.settings
        agent = PPO(settings.env_id, config | {"seed": seed, "tensorboard": False, "checkpoint_interval": 0, "eval_interval": 0},
                    preset=None, verbose=False, progress_bar=False)
        updates = settings.total_steps // agent.config.rollout_size
        evaluations: list[float] = []
        pruned = False

        def evaluate(metrics) -> bool:
            nonlocal pruned
            done = agent.num_updates
            point = done * settings.evaluations // updates  # evaluations at even fractions of training, the last at its end
            if point == (done - 1) * settings.evaluations // updates:
                return True
            returns = evaluate_policy(agent, episodes=settings.eval_episodes, deterministic=True, seed=EVAL_SEED + seed)
            evaluations.append(float(np.mean(returns)))
            metrics["eval/mean_return"] = evaluations[-1]
            trial.report(evaluations[-1], seed_index * settings.evaluations + point - 1)  # the same step means the same point in every trial
            final = done == updates and seed_index == len(settings.seeds) - 1  # the trial's score is known: complete it, never prune it
            pruned = not final and trial.should_prune()
            return not pruned

        agent.learn(callback=evaluate)
        if agent.interrupted:
            raise KeyboardInterrupt
        if pruned:
            raise optuna.TrialPruned(f"seed {seed}: evaluation {evaluations[-1]:.2f} below the median of earlier trials at the same point")
        return statistics.mean(evaluations[-SCORED_EVALUATIONS:])


def counted_trials(study) -> int:
    """Trials that count toward --trials: finished, pruned or failed; not those cut short by Ctrl-C or still running."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted")))


def run_trials(study, settings: TuneSettings, trials: int, timeout: float | None, announce: bool = False) -> None:
    """Run trials in this process until the study holds ``trials`` counted trials (from every worker) or ``timeout`` passes;
    ``announce``: print a line as each trial of this process ends."""
    def enough(study, trial) -> None:
        if announce:
            print(trial_line(study, trial), flush=True)
        if counted_trials(study) >= trials:
            study.stop()

    if counted_trials(study) >= trials:
        return
    study.optimize(Objective(settings), timeout=timeout, catch=(Exception,), callbacks=[enough], gc_after_trial=True)


def trial_line(study, trial) -> str:
    from optuna.trial import TrialState

    if trial.state == TrialState.COMPLETE:
        outcome = f"score {trial.value:.2f}"
    elif trial.state == TrialState.PRUNED:
        last = list(trial.intermediate_values.values())[-1:] or [float("nan")]
        outcome = f"pruned after {len(trial.intermediate_values)} evaluation(s), the last {last[0]:.2f}"
    else:
        outcome = f"failed: {trial.user_attrs.get('error', trial.state.name)}"
    try:
        best = f"; best so far {study.best_value:.2f} (trial {study.best_trial.number})"
    except ValueError:  # no completed trial yet
        best = ""
    return f"ppokit: trial {trial.number} {outcome}{best}"


def default_storage(study_dir: Path) -> str:
    return f"sqlite:///{(study_dir / 'tune.db').resolve()}"
