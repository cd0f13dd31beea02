"""What the policy writes, kept for a person to read: ``log_completions: N`` rows of (prompt, response, reward,
advantage) per update in ``completions.jsonl`` and in TensorBoard's text tab."""

from __future__ import annotations

import json
from pathlib import Path


def completion_rows(rollout, update: int, count: int) -> list[dict]:
    """The first ``count`` responses of a rollout (whole groups first: rows of one prompt are consecutive)."""
    rows = []
    for row in range(min(count, len(rollout))):
        advantage = rollout.advantages[row][rollout.mask[row].bool()]
        prompt = rollout.prompts[row]
        rows.append({"update": update, "prompt": prompt if isinstance(prompt, str) else prompt[-1].get("content", ""),
                     "response": rollout.texts[row], "reward": float(rollout.responses.raw_scores[row]),
                     "advantage": float(advantage[0]) if advantage.numel() else 0.0, "group": int(rollout.group_ids[row])})
    return rows


def write_completions(run_dir: Path | None, logger, rows: list[dict], step: int) -> None:
    """Append to completions.jsonl and send one markdown table to TensorBoard (``logger.text``)."""
    if run_dir is None or not rows:
        return
    with open(run_dir / "completions.jsonl", "a") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    table = ["| group | reward | advantage | prompt | response |", "|---|---|---|---|---|"]
    table += [f"| {r['group']} | {r['reward']:.3f} | {r['advantage']:.3f} | {_cell(r['prompt'])} | {_cell(r['response'])} |" for r in rows]
    logger.text("completions", "\n".join(table), step)


def drop_completions_after(run_dir: Path | None, update: int) -> None:
    """A resumed run redoes the updates after its checkpoint: their rows go, as progress.csv's do."""
    path = run_dir / "completions.jsonl" if run_dir is not None else None
    if path is None or not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["update"] <= update]
    path.write_text("".join(line + "\n" for line in kept))


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")[:300]

