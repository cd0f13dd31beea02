"""Forward passes over sampled sequences: response-token logits, log-probs and values, in bounded chunks."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from ppokit.lm.sequences import causal_inputs, position_ids, token_logprobs


def response_logits(model, sequence_ids: torch.Tensor, sequence_mask: torch.Tensor, prompt_width: int, precision,
                    share_prompts: bool = False) -> torch.Tensor:
    """Response-token logits [B, R, V]: the logits at position t predict token t + 1.

    ``share_prompts``: rows with the same prompt (the responses of one group) run it through the model once and reuse
    its keys and values (``shared_prompt_logits``); the logits are the same up to rounding, and gradients flow through
    the shared pass into every row's loss."""
    if share_prompts:
        shared = shared_prompt_logits(model, sequence_ids, sequence_mask, prompt_width, precision)
        if shared is not None:
            return shared
    # only the response positions need logits: with a large vocabulary the LM head is most of the cost
    keep = sequence_ids.shape[1] - prompt_width + 1
    with precision.autocast():
        logits = model(input_ids=sequence_ids, logits_to_keep=keep, use_cache=False, **causal_inputs(sequence_mask)).logits
    return logits[:, -keep:-1]


def shared_prompt_logits(model, sequence_ids: torch.Tensor, sequence_mask: torch.Tensor, prompt_width: int, precision) -> torch.Tensor | None:
    """Response logits computed with one pass per distinct prompt: its keys and values (the cache) are gathered for
    every row that shares it, and the responses run on top. None when no two rows share a prompt.

    With samples_per_prompt responses to each prompt this cuts the tokens a forward and backward pass process from
    n x (prompt + response) to prompt + n x response per group."""
    prompts, prompt_mask = sequence_ids[:, :prompt_width], sequence_mask[:, :prompt_width]
    distinct, row_of = torch.unique(torch.cat([prompts, prompt_mask], 1), dim=0, return_inverse=True)
    if len(distinct) == len(prompts):
        return None
    first = torch.zeros(len(distinct), dtype=torch.long, device=row_of.device).scatter_(0, row_of, torch.arange(len(row_of), device=row_of.device))
    positions = position_ids(sequence_mask)
    cache_keyword = _cache_keyword(model)
    with precision.autocast():
        prefix = model(input_ids=prompts[first], attention_mask=prompt_mask[first], position_ids=positions[first, :prompt_width], use_cache=True,
                       logits_to_keep=1)
        cache = prefix.get("cache", prefix.get("past_key_values"))
        cache.batch_select_indices(row_of)  # each row gets its prompt's keys and values (an index: gradients flow back)
        responses = sequence_ids[:, prompt_width:]
        rest = None
        if responses.shape[1] > 1:
            rest = model(input_ids=responses[:, :-1], attention_mask=sequence_mask[:, :-1], position_ids=positions[:, prompt_width:-1],
                         use_cache=True, logits_to_keep=responses.shape[1] - 1, **{cache_keyword: cache}).logits
    opening = prefix.logits[row_of]  # the last prompt position predicts the first response token
    return opening if rest is None else torch.cat([opening, rest], 1)


def _cache_keyword(model) -> str:
    """The keyword a model's forward() takes a key/value cache by: 'cache' in newer transformers, 'past_key_values' before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def response_logprobs(model, rollout, rows: torch.Tensor, precision, temperature: float, share_prompts: bool = False) -> torch.Tensor:
    """Log-probs [len(rows), R] of the sampled response tokens of ``rollout``'s rows under ``model`` (0 on padding)."""
    ids, mask, responses, width = trim_padding(rollout.sequence_ids[rows], rollout.sequence_mask[rows], rollout.response_ids[rows], rollout.prompt_width)
    logits = response_logits(model, ids, mask, width, precision, share_prompts)
    return pad_columns(token_logprobs(logits, responses, temperature), rollout.response_ids.shape[1])


def response_values(value_scores, sequence_ids: torch.Tensor, sequence_mask: torch.Tensor, prompt_width: int, precision) -> torch.Tensor:
    """The value model's estimate [B, R] before each response token (the value of the state that token is sampled in)."""
    with precision.autocast():
        return value_scores(sequence_ids, sequence_mask)[:, prompt_width - 1 : -1]


def logprobs_and_entropy(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, entropy_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(token) and the entropy of every position from one log-softmax over the vocabulary (the costly part with a
    large vocabulary); without ``entropy_grad`` the entropy is only reported and keeps no graph."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    with torch.enable_grad() if entropy_grad else torch.no_grad():
        entropy = -(logp.exp() * logp).sum(-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1), entropy


def trim_padding(sequence_ids: torch.Tensor, sequence_mask: torch.Tensor, responses: torch.Tensor, prompt_width: int):
    """Rows without the columns where every row is padding: left of the longest prompt, right of the longest response.
    A forward pass then spends nothing on a larger batch's padding. Returns (ids, mask, responses, prompt width)."""
    real = torch.nonzero(sequence_mask.bool().any(0)).flatten()
    start = min(int(real[0]), prompt_width - 1) if len(real) else 0
    end = max(int(real[-1]) + 1, prompt_width + 1) if len(real) else sequence_ids.shape[1]
    return sequence_ids[:, start:end], sequence_mask[:, start:end], responses[:, : end - prompt_width], prompt_width - start


def pad_columns(values: torch.Tensor, width: int) -> torch.Tensor:
    """[B, R'] values as [B, width], zero on the columns trim_padding dropped."""
    return torch.nn.functional.pad(values, (0, width - values.shape[1]))


def in_chunks(function: Callable[[torch.Tensor], torch.Tensor], size: int, chunk: int, device: torch.device) -> torch.Tensor:
    """function(rows) over consecutive row chunks of ``chunk`` rows, concatenated (bounds a no-grad pass's memory)."""
    rows = torch.arange(size, device=device)
    return torch.cat([function(rows[start : start + chunk]) for start in range(0, size, chunk)])
