"""The one logger of every trainer (MetricsLogger): progress.csv, TensorBoard, a progress bar and the console."""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm


def process_uptime() -> float:
    """Seconds since this process started (falls back to since ppokit was imported)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORT_TIME


_IMPORT_TIME = time.perf_counter()


# a console that a person reads: about this many summary lines per run by default (progress.csv and TensorBoard keep every row)
CONSOLE_LINES = 20


def console_interval(steps: int) -> int:
    """Every how many updates (or steps) a run of ``steps`` prints a summary line to give about CONSOLE_LINES of them."""
    return max(1, -(-steps // CONSOLE_LINES))


def _close_outputs(bar, csv_file, scalar_writer) -> None:
    """Close a logger's progress bar, CSV file and TensorBoard writer (the files may be None)."""
    bar.close()
    for output in (csv_file, scalar_writer):
        if output is not None:
            output.close()


class ScalarWriter:
    """TensorBoard scalars through the tensorboard package's own event writer (no torch import needed)."""

    def __init__(self, log_dir: Path):
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event, self._summary = Event, Summary
        self._writer = EventFileWriter(str(log_dir))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        summary = self._summary(value=[self._summary.Value(tag=tag, simple_value=float(value))])
        self._writer.add_event(self._event(wall_time=time.time(), step=int(step), summary=summary))

    def add_text(self, tag: str, text: str, step: int) -> None:
        """A markdown text, shown in TensorBoard's text tab (the text plugin reads a string tensor marked as its own)."""
        from tensorboard.compat.proto.summary_pb2 import SummaryMetadata
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
        from tensorboard.compat.proto.types_pb2 import DT_STRING

        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
        tensor = TensorProto(dtype=DT_STRING, string_val=[text.encode()], tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
        summary = self._summary(value=[self._summary.Value(tag=tag, metadata=metadata, tensor=tensor)])
        self._writer.add_event(self._event(wall_time=time.time(), step=int(step), summary=summary))

    def purge_after(self, step: int) -> None:
        """A session-start marker: TensorBoard drops earlier-written events whose step is above ``step``."""
        from tensorboard.compat.proto.event_pb2 import SessionLog

        # the marker discards events at its own step and later ones
        self._writer.add_event(self._event(wall_time=time.time(), step=int(step) + 1, session_log=SessionLog(status=SessionLog.START)))

    def close(self) -> None:
        self._writer.close()


def _truncate_csv(path: Path, last: int, column: str = "update") -> None:
    """Keep the header and the rows whose ``column`` is at most ``last``."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    index = rows[0].index(column) if column in rows[0] else None
    kept = [rows[0]] + [r for r in rows[1:] if index is None or (r[index] and int(float(r[index])) <= last)]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, path)


def _read_csv_rows(path: Path) -> list[dict[str, float]]:
    """progress.csv back as rows of numbers (empty cells left out)."""
    with open(path, newline="") as f:
        return [{key: float(value) for key, value in row.items() if value not in ("", None)} for row in csv.DictReader(f)]


def _fmt(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


class MetricsLogger:
    """The one logger of every trainer: one row per step to progress.csv, TensorBoard, a progress bar and the console.

    ``columns`` fixes the CSV header; a row may leave some empty. ``unit`` names what the bar counts (env steps for
    gym PPO, optimizer steps for SFT and the reward model, episodes for LM PPO). ``step_column`` names the row's
    step (``update`` for gym PPO, whose rows also carry ``global_step``), by which a resumed run drops redone rows.
    """

    def __init__(self, run_dir: str | Path | None, columns: list[str], total: int, unit: str, tensorboard: bool = True,
                 progress: bool | None = None, console: bool = True, log_interval: int = 0, resume_after_step: int | None = None,
                 initial: int = 0, last_step: int | None = None, step_column: str = "step", tensorboard_resume_step: int | None = None,
                 append: bool = False, unit_scale: bool = False):
        """``resume_after_step``: a resumed run; the rows already in progress.csv up to that step are kept
        (and read back into ``rows``), later ones (work redone from the checkpoint) dropped, and TensorBoard is told
        to discard what it has after ``tensorboard_resume_step`` (default the same step: TensorBoard's x axis may be
        another count). ``initial``: where the bar starts. ``log_interval``: a console line every N steps and at
        ``last_step``; 0: about 20 lines over the run. ``append``: add to a progress.csv that is there (a second
        learn() of the same agent) rather than start it again."""
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.columns = columns
        self.console = console
        self.last_step = last_step
        self.step_column = step_column
        first = resume_after_step or 0
        self.log_interval = log_interval or console_interval((last_step or first + 1) - first)
        self.rows: list[dict[str, float]] = []
        self._csv_file = self._csv = self._tb = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            path = self.run_dir / "progress.csv"
            resuming = resume_after_step is not None and path.exists()
            if resuming:
                _truncate_csv(path, resume_after_step, column=step_column)
                self.rows = _read_csv_rows(path)
            keep = (resuming or append) and path.exists() and path.stat().st_size > 0
            self._csv_file = open(path, "a" if keep else "w", newline="")
            self._csv = csv.DictWriter(self._csv_file, fieldnames=columns, extrasaction="ignore")
            if not keep:
                self._csv.writeheader()
            if tensorboard:
                self._tb = ScalarWriter(self.run_dir)
                if resume_after_step is not None:
                    self._tb.purge_after(resume_after_step if tensorboard_resume_step is None else tensorboard_resume_step)
        show = sys.stderr.isatty() if progress is None else progress
        self._bar = tqdm(total=total, initial=initial, unit=unit, unit_scale=unit_scale, disable=not show, dynamic_ncols=True)

    def log(self, step: int, progress: int, row: dict[str, float], summary_keys: list[str] = (), *, tensorboard_step: int | None = None,
            postfix: str | None = None, line: str | None = None) -> dict[str, float]:
        """Record ``row`` at ``step``; ``progress`` is the bar's absolute position. TensorBoard's x axis is
        ``tensorboard_step`` (default ``step``); the bar's postfix and the console line show ``summary_keys`` unless
        ``postfix`` / ``line`` are given. Returns the row as written."""
        row = {self.step_column: step, **row}
        self.rows.append(row)
        if self._csv is not None:
            self._csv.writerow({k: _fmt(v) for k, v in row.items()})
            self._csv_file.flush()
        if self._tb is not None:
            x = step if tensorboard_step is None else tensorboard_step
            for name, value in row.items():
                if "/" in name and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(name, value, x)
        self._bar.update(progress - self._bar.n)
        shown = [f"{key.split('/')[-1]} {row[key]:.3g}" for key in summary_keys if isinstance(row.get(key), (int, float))]
        self._bar.set_postfix_str(" ".join(shown) if postfix is None else postfix)
        if self.console and (step % self.log_interval == 0 or step == self.last_step):
            self._bar.write(f"step {step:>6} | " + " | ".join(shown) if line is None else line, file=sys.stdout)
        return row

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One more TensorBoard point outside the rows (nothing without TensorBoard)."""
        if self._tb is not None:
            self._tb.add_scalar(tag, value, step)

    def message(self, text: str) -> None:
        """A line on the console (above the progress bar) unless the console is quiet; warnings always."""
        if self.console or text.startswith("warning"):
            self._bar.write(text, file=sys.stderr if text.startswith("warning") else sys.stdout)

    def text(self, tag: str, text: str, step: int) -> None:
        """A text for TensorBoard's text tab (nothing without TensorBoard)."""
        if self._tb is not None:
            self._tb.add_text(tag, text, step)

    def close(self) -> None:
        _close_outputs(self._bar, self._csv_file, self._tb)
