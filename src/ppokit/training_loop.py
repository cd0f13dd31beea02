"""The skeleton every ppokit trainer runs (gym PPO, LM PPO, SFT and the reward model): steps until the plan is done,
with SIGINT/SIGTERM turned into a stop at the next step boundary, checkpoints on their cadence and at every stop,
callbacks that stop training, and every rank of a data-parallel run stopping after the same step.

A trainer supplies what one step is; the skeleton decides when to checkpoint and when to stop, so that each
trainer's own file reads as collect, advantages, update, log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ppokit.signals import StopRequest


@dataclass
class LoopPlan:
    """What the skeleton needs from a trainer."""

    step: Callable[[], bool]
    """One step (an update, or an optimizer step); False when a callback asks to stop."""
    position: Callable[[], int]
    """Steps made so far over the whole run (a resumed run counts from where it was)."""
    end: int
    """The position at which the plan is done."""
    checkpoint: Callable[[], object] | None
    """Write a checkpoint (None: the run keeps none)."""
    checkpoint_interval: int
    """Checkpoint every this many steps (0: only at stops and at the end)."""
    message: Callable[[str], None]
    """Where the stop notice goes (the trainer's logger)."""
    stop_note: Callable[[], str] = lambda: ""
    """Appended to the stop notice (how to continue)."""
    unit: str = "update"
    callbacks_may_stop: bool = False
    """Whether a step can return False (then every rank asks the others, once per step)."""
    before: Callable[[], None] | None = None
    """Run once before the first step, under the same signal and failure handling (an evaluation before training)."""


def run_training_loop(plan: LoopPlan, world) -> str | None:
    """Step until ``plan.end``; returns the name of the signal that stopped the run, or None."""
    with StopRequest() as stop, world.failing():
        if plan.before is not None:
            plan.before()
        while plan.position() < plan.end:
            keep_going = plan.step()
            # the ranks stop together: after the step where any of them was asked to
            if plan.callbacks_may_stop:
                keep_going = not world.any(not keep_going)
            signal_name = world.agree_on_signal(stop.signal_name)
            position = plan.position()
            due = plan.checkpoint_interval and position % plan.checkpoint_interval == 0
            # the end is checkpointed too: a resume then knows the run finished
            if plan.checkpoint is not None and (due or not keep_going or signal_name or position >= plan.end):
                plan.checkpoint()
            if signal_name:
                plan.message(f"{signal_name} received: stopped after {plan.unit} {position}" + plan.stop_note())
                return signal_name
            if not keep_going:
                break
    return None
