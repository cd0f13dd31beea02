"""What the before/after benchmarks share: a git revision checked out beside the working tree, and the table of
per-seed values, medians and the after/before ratio."""

import statistics
import subprocess
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def revision_tree(revision: str, folder: Path):
    """``revision`` checked out in ``folder`` (a git worktree, removed afterwards); yields its src/ for PYTHONPATH."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), revision], check=True, capture_output=True)
    try:
        yield folder / "src"
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], check=False)


def comparison_rows(results: dict[str, dict[str, list[float]]], value_format: str, ratio_format: str) -> list[str]:
    """Markdown rows ``| group | side | values per seed | median | ratio |``: each group's two sides, the second's row
    with its median over the first's."""
    lines = []
    for group, sides in results.items():
        (_, first), (_, second) = sides.items()
        ratio = statistics.median(second) / statistics.median(first)
        for index, (label, values) in enumerate(sides.items()):
            shown = ", ".join(format(v, value_format) for v in values)
            lines.append(f"| {group} | {label} | {shown} | {format(statistics.median(values), value_format)} | "
                         f"{format(ratio, ratio_format) + 'x' if index == 1 else ''} |")
    return lines


def alternating(sides: list, seeds: list[int]):
    """(seed, side) in the order the runs go: both sides each seed, the first one first on even seeds."""
    for seed in seeds:
        for side in (sides if seed % 2 == 0 else sides[::-1]):
            yield seed, side


def write_comparison(out: Path, title: str, command: str, seeds: list[int], setting: str, columns: tuple[str, str, str], results: dict,
                     formats: tuple[str, str]) -> None:
    """The report: ``title``, the command and seeds with the ``setting`` they ran in, then the table of ``comparison_rows``
    (columns: group, side, quantity; formats: of the values and of the ratio)."""
    group, side, quantity = columns
    lines = [f"# {title}", "", f"`{command}`: seeds {', '.join(map(str, seeds))}, {setting}.", "",
             f"| {group} | {side} | {quantity} per seed | median | after / before |", "|---|---|---|---|---|", *comparison_rows(results, *formats)]
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


def run_sides(groups: dict[str, list[tuple]], seeds: list[int], measure_one, unit: str) -> dict[str, dict[str, list[float]]]:
    """For each group, every seed on both of its sides (``(label, ...)`` tuples), alternating; ``measure_one(group, seed,
    side)`` returns the figure. Returns group -> side label -> the figure of each seed."""
    results = {}
    for group, sides in groups.items():
        results[group] = {side[0]: [] for side in sides}
        for seed, side in alternating(sides, seeds):
            figure = measure_one(group, seed, side)
            results[group][side[0]].append(figure)
            print(f"{group} seed {seed} {side[0]}: {figure:.4g} {unit}", flush=True)
    return results
