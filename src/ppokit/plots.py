"""Learning curves from run directories: episodic return against environment steps.

Runs are grouped by env id (and preset), and each group is drawn as the mean over its runs (seeds)
with a band from the lowest to the highest run. Reads only progress.csv and config.yaml.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import yaml

from ppokit.errors import PPOKitError

FIGSIZE = (8.0, 5.0)
DPI = 100  # so a plot is 800 x 500 pixels


def read_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(global steps, mean episodic return of the update) for the updates that finished episodes."""
    path = Path(run_dir) / "progress.csv"
    if not path.is_file():
        raise PPOKitError(f"{run_dir}: no progress.csv; expected a ppokit run directory")
    steps, returns = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            value = row.get("charts/episodic_return", "")
            if value:
                steps.append(float(row["global_step"]))
                returns.append(float(value))
    return np.array(steps), np.array(returns)


def run_label(run_dir: Path) -> str:
    config_path = Path(run_dir) / "config.yaml"
    if config_path.is_file():
        config = yaml.safe_load(config_path.read_text()) or {}
        env_id = config.get("env_id") or "custom env"
        preset = config.get("preset")
        return f"{env_id} ({preset})" if preset and preset != env_id else str(env_id)
    return Path(run_dir).name


def smooth(values: np.ndarray, window: int = 10) -> np.ndarray:
    """Trailing moving average (shorter at the start), so noisy per-update means read as a curve."""
    if len(values) == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, len(values) + 1) - counts]) / counts


def plot_runs(run_dirs: list[Path], output: Path, title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for run_dir in run_dirs:
        steps, returns = read_curve(run_dir)
        groups.setdefault(run_label(run_dir), []).append((steps, smooth(returns)))
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    for label, curves in groups.items():
        curves = [c for c in curves if len(c[0]) > 0]
        if not curves:
            continue
        end = min(c[0][-1] for c in curves)
        grid = np.linspace(max(c[0][0] for c in curves), end, 200) if end > 0 else np.array([0.0])
        stacked = np.array([np.interp(grid, s, r) for s, r in curves])
        ax.plot(grid, stacked.mean(0), label=f"{label}: mean of {len(curves)} run(s)")
        if len(curves) > 1:
            ax.fill_between(grid, stacked.min(0), stacked.max(0), alpha=0.25)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episodic return (training, smoothed)")
    ax.set_title(title or "ppokit learning curves")
    ax.grid(alpha=0.3)
    if groups:
        ax.legend(loc="lower right")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=DPI)
    plt.close(fig)
    return output
