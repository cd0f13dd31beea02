"""What a study leaves in its folder: trials.csv, best.yaml (a config for `ppokit train --config`),
history.png and importance.png, and a one-line summary."""

from __future__ import annotations

import contextlib
import csv
import json
import warnings
from pathlib import Path
from typing import Any

import yaml

from ppokit.tune.study import TuneSettings


def write_report(study, settings: TuneSettings, study_dir: Path) -> str:
    """Writes the study's outputs to ``study_dir``; returns the one-line summary."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    write_trials_csv(trials, settings, study_dir / "trials.csv")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    counts = {state: sum(1 for t in trials if t.state == state) for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    summary = (f"{study.study_name}: {len(trials)} trials ({counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
               f"{counts[TrialState.FAIL]} failed)")
    if not complete:
        return summary + "; no trial has completed yet, so there is no best config"
    best = study.best_trial
    write_best_config(best, settings, study, study_dir / "best.yaml")
    _write_plots(study, study_dir, len(complete))
    return summary + f"; best: trial {best.number}, score {best.value:.2f}, config {study_dir / 'best.yaml'}"


def best_config(best, settings: TuneSettings) -> dict[str, Any]:
    """The best trial's config as a preset writes one: the keys that differ from PPOConfig's defaults (the base's
    preset, --config and key=value, and the sampled keys, as trained), and the budget."""
    from ppokit.gym.config import PPOConfig

    defaults = PPOConfig().to_dict()
    config = settings.base | best.user_attrs.get("config", {})
    return {key: value for key, value in config.items() if value != defaults.get(key)} | {"total_steps": settings.total_steps}


def write_best_config(best, settings: TuneSettings, study, path: Path) -> None:
    header = (f"# ppokit tune: the best trial ({best.number}) of study {study.study_name!r} on {settings.env_id}: "
              f"score {best.value:.4f} (mean over seeds {settings.seeds} of the last evaluations, {settings.eval_episodes} deterministic episodes each)\n"
              f"# base: {'preset ' + settings.preset_name if settings.preset_name else 'no preset'}; train it with: "
              f"ppokit train {settings.env_id} --no-preset --config {path.name}\n")
    path.write_text(header + yaml.safe_dump(best_config(best, settings), sort_keys=False))


def write_trials_csv(trials, settings: TuneSettings, path: Path) -> None:
    keys = [d.key for d in settings.dimensions]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "score", *keys, "seed_scores", "seconds", "error"])
        for t in trials:
            config = t.user_attrs.get("config", {})
            seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else ""
            writer.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                             *[json.dumps(config[k]) if isinstance(config.get(k), list) else config.get(k, t.params.get(k, "")) for k in keys],
                             json.dumps(t.user_attrs.get("seed_scores", [])), seconds, t.user_attrs.get("error", "")])


def _write_plots(study, study_dir: Path, complete: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as optuna_plots

    with _quiet_experimental_warnings():
        _save(optuna_plots.plot_optimization_history(study), study_dir / "history.png")
        if complete >= 2:  # importances compare completed trials
            try:
                axes = optuna_plots.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
            except (RuntimeError, ValueError) as exc:  # e.g. every completed trial took the same value of each key
                optuna.logging.get_logger("optuna").warning(f"no importance plot: {exc}")
                return
            _save(axes, study_dir / "importance.png")


def _save(axes, path: Path) -> None:
    import matplotlib.pyplot as plt

    axes.figure.set_size_inches(8, 5)
    axes.figure.tight_layout()
    axes.figure.savefig(path, dpi=100)
    plt.close(axes.figure)


@contextlib.contextmanager
def _quiet_experimental_warnings():
    """Optuna's matplotlib plots are marked experimental and warn on every call."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
