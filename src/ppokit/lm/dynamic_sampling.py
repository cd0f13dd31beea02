"""Dynamic sampling (DAPO): a batch made of groups whose rewards differ, since a group of equal rewards gets advantage 0
from a group estimator and teaches nothing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ppokit.lm.rollout import Responses
from ppokit.lm.score_shaping import penalized


def informative_groups(responses: Responses, samples_per_prompt: int, missing_eos_penalty: float | None) -> list[bool]:
    """Whether each group's (penalized) scores differ."""
    scores = penalized(responses.raw_scores, responses.has_eos, missing_eos_penalty).view(-1, samples_per_prompt)
    return (scores.max(1).values > scores.min(1).values).tolist()


def keep_informative_groups(first: Responses, sample_more: Callable[[], Responses], samples_per_prompt: int, max_rounds: int,
                            missing_eos_penalty: float | None, world) -> tuple[Responses, dict[str, float]]:
    """Keep groups whose rewards differ; ``sample_more()`` draws groups of new prompts (every rank alike) until every rank
    is full or ``max_rounds`` more rounds are spent; a batch still short is filled with dropped groups. Returns this
    rank's responses and the logged env/dropped_groups and env/sampling_rounds (over every rank)."""
    quota, n = len(first), samples_per_prompt
    kept, dropped, rounds, generated = [], [], 0, 0
    responses = first
    while True:
        generated += len(responses) // n
        informative = informative_groups(responses, n, missing_eos_penalty)
        for group in range(len(responses) // n):
            (kept if informative[group] else dropped).append(responses.take(list(range(group * n, (group + 1) * n))))
        if not world.any(len(kept) * n < quota) or rounds == max_rounds:
            break
        rounds += 1
        responses = sample_more()
    chosen = (kept + dropped)[: quota // n]
    used_total, generated_total = world.sum(np.array([float(len(chosen)), float(generated)])).tolist()
    return Responses.join(chosen), {"env/dropped_groups": 1.0 - used_total / generated_total, "env/sampling_rounds": float(rounds + 1)}
