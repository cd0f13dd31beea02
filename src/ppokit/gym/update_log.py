"""The row gym PPO logs after each update: CleanRL's metric names, the episodes that ended, SPS, and its console line;
written through the one logger (``ppokit.run_logging.MetricsLogger``)."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from ppokit.run_logging import MetricsLogger, process_uptime

# CleanRL's names, so existing dashboards and habits carry over.
CSV_COLUMNS = [
    "global_step",
    "update",
    "time_elapsed",
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/episodes",
    "charts/SPS",
    "charts/learning_rate",
    "charts/clip_range",
    "losses/policy_loss",
    "losses/value_loss",
    "losses/entropy",
    "losses/old_approx_kl",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
    "losses/grad_norm",
]




class UpdateLog:
    """Turns an update's metrics and its finished episodes into a logged row; keeps the last 20 returns."""

    def __init__(self, run_dir: str | Path | None, total_steps: int, start_step: int = 0, tensorboard: bool = True, progress: bool | None = None,
                 console: bool = True, log_interval: int = 0, resume_after_update: int | None = None, last_update: int | None = None):
        """``resume_after_update``: a resumed run (rows after that update are dropped, TensorBoard after ``start_step``)."""
        self.logger = MetricsLogger(run_dir, CSV_COLUMNS, total_steps, "step", tensorboard=tensorboard, progress=progress, console=console,
                                    log_interval=log_interval, resume_after_step=resume_after_update, initial=start_step, last_step=last_update,
                                    step_column="update", tensorboard_resume_step=start_step, append=True, unit_scale=True)
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.last_episodes: list[tuple[float, int]] = []  # (return, length) of episodes ended in the last update
        self._start_time = time.perf_counter()
        self._start_step = start_step

    def log_update(self, global_step: int, update: int, metrics: dict[str, float], episodes: list[tuple[float, int]]) -> dict[str, float]:
        """Record one update; returns the row as written (with episode means and SPS filled in)."""
        elapsed = time.perf_counter() - self._start_time
        row: dict[str, float] = {"global_step": global_step, "time_elapsed": process_uptime()}
        row["charts/SPS"] = (global_step - self._start_step) / max(elapsed, 1e-9)
        row["charts/episodes"] = len(episodes)
        self.last_episodes = list(episodes)
        if episodes:
            row["charts/episodic_return"] = sum(r for r, _ in episodes) / len(episodes)
            row["charts/episodic_length"] = sum(n for _, n in episodes) / len(episodes)
            self.recent_returns.extend(r for r, _ in episodes)
        row.update(metrics)
        recent = self.recent_mean_return
        postfix = f"sps={row['charts/SPS']:,.0f} return={recent:.1f}" if recent is not None else f"sps={row['charts/SPS']:,.0f}"
        row = self.logger.log(update, global_step, row, tensorboard_step=global_step, postfix=postfix,
                              line=self._summary(update, row, recent))
        for ret, _length in episodes:
            self.logger.scalar("charts/episode_return_each", ret, global_step)
        return row

    @property
    def recent_mean_return(self) -> float | None:
        return sum(self.recent_returns) / len(self.recent_returns) if self.recent_returns else None

    def message(self, text: str) -> None:
        self.logger.message(text)

    def close(self) -> None:
        self.logger.close()

    @staticmethod
    def _summary(update: int, row: dict[str, float], recent: float | None) -> str:
        parts = [f"update {update:>5}", f"step {row['global_step']:>9,}"]
        parts.append(f"return(last 20) {recent:8.2f}" if recent is not None else "return(last 20)      n/a")
        for label, key in [("pg", "losses/policy_loss"), ("vf", "losses/value_loss"), ("ent", "losses/entropy"),
                           ("kl", "losses/approx_kl"), ("clip", "losses/clipfrac"), ("ev", "losses/explained_variance")]:
            value = row.get(key)
            if value is not None:
                parts.append(f"{label} {value:.3g}")
        parts.append(f"sps {row['charts/SPS']:,.0f}")
        return " | ".join(parts)
