"""The prompts of an LM PPO run: encoded once (fitted to the model's context), visited in shuffled passes."""

from __future__ import annotations

import random

from ppokit.errors import ConfigError
from ppokit.lm.checkpoints import python_random_state, set_python_random_state
from ppokit.lm.data import load_located_rows, prompt_of
from ppokit.lm.encoding import encode_prompt


def encode_prompts(tokenizer, located: list[tuple[str, str | list]], room: int | None, truncate: bool, max_new_tokens: int) -> list[list[int]]:
    """The token ids of each (where, prompt); ``room``: the tokens a prompt may take (the context less max_new_tokens, None:
    no limit). A longer prompt is an error naming it, or with ``truncate`` keeps its last ``room`` tokens."""
    if not located:
        raise ConfigError("no prompts: the prompt dataset is empty")
    encoded = []
    for where, prompt in located:
        ids = encode_prompt(tokenizer, prompt, where)
        if room is not None and len(ids) > room:
            if not truncate or room < 1:
                raise ConfigError(f"{where} is {len(ids)} tokens; with max_new_tokens={max_new_tokens} it does not fit "
                                  f"the model's context of {room + max_new_tokens} tokens (set truncate_prompts=true to keep its last {room} tokens)")
            ids = ids[-room:]
        encoded.append(ids)
    return encoded


def located_prompts(given: list | None, path: str | None, kind: str) -> list[tuple[str, str | list]]:
    """(where, prompt) of prompts given in Python (strings or message lists) or read from a JSONL file's ``prompt`` column."""
    if given is not None:
        return [(f"{kind} {i + 1}", prompt) for i, prompt in enumerate(given)]
    return [(where, prompt_of(row)) for where, row in load_located_rows(path, "prompt")]


class PromptPool:
    """Prompts and their ids; ``next_batch`` walks shuffled passes over them, one after another, from a seeded order
    (the same on every rank)."""

    def __init__(self, prompts: list, prompt_ids: list[list[int]], seed: int):
        self.prompts, self.prompt_ids = prompts, prompt_ids
        self.order_rng = random.Random(seed)
        self.queue: list[int] = []  # prompt indices still to visit in the current pass

    def next_batch(self, count: int) -> list[int]:
        while len(self.queue) < count:
            order = list(range(len(self.prompts)))
            self.order_rng.shuffle(order)
            self.queue += order
        indices, self.queue = self.queue[:count], self.queue[count:]
        return indices

    def state_dict(self) -> dict:
        return {"order_rng": python_random_state(self.order_rng), "prompt_queue": self.queue}

    def load_state_dict(self, state: dict) -> None:
        set_python_random_state(self.order_rng, state["order_rng"])
        self.queue = [int(i) for i in state["prompt_queue"]]

    def check_queue(self, source: str) -> None:
        """A resumed queue must index these prompts (a run resumed with fewer would fail later, or visit others)."""
        if any(i >= len(self.prompts) for i in self.queue):
            raise ConfigError(f"{source}: the run had more prompts than {len(self.prompts)}; resume with the same prompts")
