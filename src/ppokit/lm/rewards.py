"""Rewards for language-model PPO behind one interface: ``source.score(batch) -> tensor [B]`` on the
device of ``batch.sequence_ids``, and ``source.models``, the reward models it runs (the trainer
places them on its device and in its inference dtype).

A reward model and a plain Python function ``(prompt, response) -> float`` are both sources, and
``SumReward`` adds several. For chat prompts a function receives the prompt's message list. A function that raises,
or returns something other than a finite number,
stops the run with a RewardError naming the function, the prompt and the response (the trainer keeps
its last checkpoint and logs).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from ppokit.errors import ConfigError, RewardError
from ppokit.lm.encoding import encode_prompt_and_response
from ppokit.lm.reward_model import sequence_scores
from ppokit.lm.sequences import pad_sequences


@dataclass
class ResponseBatch:
    """What a reward source may look at: the texts and the policy's token ids of prompt + response."""

    prompts: list  # strings, or message lists for chat prompts
    responses: list[str]
    sequence_ids: torch.Tensor  # [B, L] prompt (left-padded) + response (right-padded, cut after EOS)
    sequence_mask: torch.Tensor  # [B, L] 1 on real tokens
    tokenizer: object


class RewardSource(Protocol):
    name: str
    models: list  # the torch modules it runs (none for a function)

    def score(self, batch: ResponseBatch) -> torch.Tensor: ...


class FunctionReward:
    """A rule-based reward: ``function(prompt, response) -> float`` applied to every row."""

    models: list = []

    def __init__(self, function: Callable[[str, str], float], name: str | None = None):
        self.function = function
        self.name = name or getattr(function, "__name__", "reward_function")

    def score(self, batch: ResponseBatch) -> torch.Tensor:
        values = []
        for prompt, response in zip(batch.prompts, batch.responses):
            try:
                value = self.function(prompt, response)
            except Exception as exc:
                raise RewardError(f"reward function {self.name!r} raised {type(exc).__name__}: {exc} "
                                  f"on prompt {prompt!r} and response {response!r}") from exc
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RewardError(f"reward function {self.name!r} returned {value!r} for prompt {prompt!r} and response "
                                  f"{response!r}; expected a finite number")
            values.append(float(value))
        return torch.tensor(values, dtype=torch.float32, device=batch.sequence_ids.device)


class RewardModelReward:
    """A trained scalar reward model. With the policy's own tokenizer the token ids are scored as they
    are; with another tokenizer the texts are encoded again with the reward model's."""

    def __init__(self, model, tokenizer, name: str = "reward_model", batch_size: int = 64):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self._shares_vocabulary: dict[int, bool] = {}  # per policy tokenizer: comparing vocabularies costs ms

    @property
    def models(self) -> list:
        return [self.model]

    @torch.no_grad()
    def score(self, batch: ResponseBatch) -> torch.Tensor:
        key = id(batch.tokenizer)
        if key not in self._shares_vocabulary:
            self._shares_vocabulary[key] = _same_vocabulary(batch.tokenizer, self.tokenizer)
        device = next(self.model.parameters()).device
        if self._shares_vocabulary[key]:
            ids, mask = batch.sequence_ids.to(device), batch.sequence_mask.to(device)
        else:
            sequences = [encode_prompt_and_response(self.tokenizer, p, r, f"reward model {self.name!r}")[0] for p, r in zip(batch.prompts, batch.responses)]
            ids, mask = pad_sequences(sequences, self.tokenizer.pad_token_id, side="right", device=device)
        parts = [sequence_scores(self.model, ids[i : i + self.batch_size], mask[i : i + self.batch_size]) for i in range(0, len(ids), self.batch_size)]
        scores = torch.cat(parts).to(batch.sequence_ids.device)
        if not torch.isfinite(scores).all():
            raise RewardError(f"reward model {self.name!r} returned non-finite scores; check the model's weights")
        return scores


class SumReward:
    """The weighted sum of several sources."""

    def __init__(self, sources: list, weights: list[float] | None = None):
        if not sources:
            raise ConfigError("no reward: give reward_model and/or reward_function")
        self.sources = sources
        self.weights = weights or [1.0] * len(sources)
        self.name = " + ".join(s.name for s in sources)

    @property
    def models(self) -> list:
        return [model for source in self.sources for model in source.models]

    def score(self, batch: ResponseBatch) -> torch.Tensor:
        return sum(w * s.score(batch) for w, s in zip(self.weights, self.sources))


def load_function(spec: str) -> Callable[[str, str], float]:
    """Import 'package.module:function' or 'path/to/file.py:function'."""
    target, _, attribute = spec.rpartition(":")
    if not target or not attribute:
        raise ConfigError(f"reward function {spec!r}: expected 'module:function' or 'file.py:function'")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ConfigError(f"reward function {spec!r}: file {target!r} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"ppokit_reward_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(f"reward function {spec!r}: cannot import module {target!r} ({exc})") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"reward function {spec!r}: {target!r} has no callable {attribute!r}")
    return function


def _same_vocabulary(first, second) -> bool:
    return first is second or (len(first) == len(second) and first.get_vocab() == second.get_vocab())
