"""Forward passes over sampled sequences: response-token logits, log-probs and values, in bounded chunks."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ppokit.lm.sequences import causal_inputs, token_logprobs


def response_logits(model, sequence_ids: torch.Tensor, sequence_mask: torch.Tensor, prompt_width: int, precision) -> torch.Tensor:
    """Response-token logits [B, R, V]: the logits at position t predict token t + 1."""
    # only the response positions need logits: with a large vocabulary the LM head is most of the cost
    keep = sequence_ids.shape[1] - prompt_width + 1
    with precision.autocast():
        logits = model(input_ids=sequence_ids, logits_to_keep=keep, use_cache=False, **causal_inputs(sequence_mask)).logits
    return logits[:, -keep:-1]


def response_logprobs(model, rollout, rows: torch.Tensor, precision, temperature: float) -> torch.Tensor:
    """Log-probs [len(rows), R] of the sampled response tokens of ``rollout``'s rows under ``model``."""
    logits = response_logits(model, rollout.sequence_ids[rows], rollout.sequence_mask[rows], rollout.prompt_width, precision)
    return token_logprobs(logits, rollout.response_ids[rows], temperature)


def response_values(value_scores, sequence_ids: torch.Tensor, sequence_mask: torch.Tensor, prompt_width: int, precision) -> torch.Tensor:
    """The value model's estimate [B, R] before each response token (the value of the state that token is sampled in)."""
    with precision.autocast():
        return value_scores(sequence_ids, sequence_mask)[:, prompt_width - 1 : -1]


def in_chunks(function: Callable[[torch.Tensor], torch.Tensor], size: int, chunk: int, device: torch.device) -> torch.Tensor:
    """function(rows) over consecutive row chunks of ``chunk`` rows, concatenated (bounds a no-grad pass's memory)."""
    rows = torch.arange(size, device=device)
    return torch.cat([function(rows[start : start + chunk]) for start in range(0, size, chunk)])
