"""Forward passes over sampled sequences: response-token logits, log-probs and values, in bounded chunks.

Prompts repeat across a batch: a chat template's system turn opens every prompt, and the samples_per_prompt
responses of a group share their whole prompt. ``share_prompts`` runs what rows have in common once and reuses its
keys and values (``staged_outputs``): the common prefix of every row's prompt, then each distinct prompt's remainder,
then the responses on top. The outputs equal those of separate passes up to rounding (the same attention, masked
the same way, at the same positions), gradients flow through the shared passes into every row's loss, and the
tokens a forward and backward pass process drop from B x (prompt + response) to about
common prefix + distinct prompts x remainder + B x response.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ppokit.errors import ConfigError
from ppokit.lm.sequences import causal_inputs, gather_tokens, position_ids, sampling_logprobs, token_logprobs

# run(input_ids, attention_mask, position_ids, cache, keep) -> (the outputs at the last ``keep`` positions, the cache)
StageRun = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, object, int], tuple[torch.Tensor, object]]


def response_logits(model, sequence_ids: torch.Tensor, sequence_mask: torch.Tensor, prompt_width: int, precision,
                    share_prompts: bool = False) -> torch.Tensor:
    """Response-token logits [B, R, V]: the logits at position t predict token t + 1."""
    with precision.autocast():
        if share_prompts:
            staged = staged_outputs(_causal_lm_run(model), sequence_ids, sequence_mask, prompt_width)
            if staged is not None:
                return staged
        # only the response positions need logits: with a large vocabulary the LM head is most of the cost
        keep = sequence_ids.shape[1] - prompt_width + 1
        logits = model(input_ids=sequence_ids, logits_to_keep=keep, use_cache=False, **causal_inputs(sequence_mask)).logits
    return logits[:, -keep:-1]


def response_values(model, sequence_ids: torch.Tensor, sequence_mask: torch.Tensor, prompt_width: int, share_prompts: bool = False) -> torch.Tensor:
    """A value model's estimate [B, R] before each response token (the value of the state that token is sampled in): its
    scalar head on its body's hidden state at the last prompt position and at every response position but the last."""
    body, head = _body_and_head(model)
    if share_prompts:
        staged = staged_outputs(_body_run(body), sequence_ids, sequence_mask, prompt_width)
        if staged is not None:
            return head(staged).squeeze(-1).float()
    hidden = body(input_ids=sequence_ids, use_cache=False, **causal_inputs(sequence_mask)).last_hidden_state
    return head(hidden[:, prompt_width - 1 : -1]).squeeze(-1).float()


def response_logprobs(model, rollout, rows: torch.Tensor, precision, temperature: float, share_prompts: bool = False,
                      suppressed: int | None = None) -> torch.Tensor:
    """Log-probs [len(rows), R] of the sampled response tokens of ``rollout``'s rows under ``model`` (0 on padding), in the
    distribution they were sampled from (``suppressed``: the pad token, never sampled)."""
    ids, mask, responses, width = trim_padding(rollout.sequence_ids[rows], rollout.sequence_mask[rows], rollout.response_ids[rows], rollout.prompt_width)
    logits = response_logits(model, ids, mask, width, precision, share_prompts)
    return pad_columns(token_logprobs(logits, responses, temperature, suppressed), rollout.response_ids.shape[1])


def logprobs_and_entropy(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, entropy_grad: bool,
                         suppressed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(token) and the entropy of every position from one log-softmax over the vocabulary (the costly part with a
    large vocabulary); without ``entropy_grad`` the entropy is only reported and keeps no graph."""
    logp = sampling_logprobs(logits, temperature, suppressed)
    with torch.enable_grad() if entropy_grad else torch.no_grad():
        entropy = -(logp.exp() * logp.masked_fill(torch.isinf(logp), 0.0)).sum(-1)  # (a suppressed token adds 0, not 0 x inf)
    return gather_tokens(logp, tokens, suppressed), entropy


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


# ---------------------------------------------------------------- shared prompt passes
# an opening shared by every prompt gets a pass of its own only when that spares at least this many tokens: a pass reads
# every weight once more, which with small batches costs about as much as this many tokens (measured on a 2-core CPU)
MIN_TOKENS_SPARED = 128


@dataclass
class PromptSharing:
    """What the rows of a batch share: ``common`` tokens that open every prompt, and the distinct prompts (``first``: a row
    holding each; ``row_of``: each row's distinct prompt; ``remainders``: each distinct prompt after the common opening)."""

    common: list[int]
    first: torch.Tensor
    row_of: torch.Tensor
    remainders: list[list[int]]

    @classmethod
    def of(cls, prompts: torch.Tensor, prompt_mask: torch.Tensor) -> PromptSharing | None:
        """None when the rows share nothing worth a pass of its own."""
        distinct, row_of = torch.unique(torch.cat([prompts, prompt_mask], 1), dim=0, return_inverse=True)
        first = torch.zeros(len(distinct), dtype=torch.long, device=row_of.device).scatter_(0, row_of, torch.arange(len(row_of), device=row_of.device))
        tokens = [row[mask.bool()].tolist() for row, mask in zip(prompts[first].cpu(), prompt_mask[first].cpu())]
        # at least one token of every prompt stays after the opening: its last position predicts the first response token
        common = os.path.commonprefix(tokens)[: min(len(t) for t in tokens) - 1]
        common = common if (len(tokens) - 1) * len(common) >= MIN_TOKENS_SPARED else []
        if not common and len(distinct) == len(prompts):
            return None
        return cls(common, first, row_of, [t[len(common):] for t in tokens])

    @property
    def grouped(self) -> bool:
        """Whether rows share whole prompts (the responses of a group)."""
        return len(self.remainders) < len(self.row_of)


def staged_outputs(run: StageRun, sequence_ids: torch.Tensor, sequence_mask: torch.Tensor, prompt_width: int) -> torch.Tensor | None:
    """The outputs [B, R, ...] at the last prompt position and every response position but the last, computed in stages
    on a key/value cache: the common opening of every prompt once; each distinct prompt once; the responses on top. When
    every prompt is distinct, each one's rest runs together with its response. None when the rows share nothing."""
    sharing = PromptSharing.of(sequence_ids[:, :prompt_width], sequence_mask[:, :prompt_width])
    if sharing is None:
        return None
    device, count, seen = sequence_ids.device, len(sharing.remainders), len(sharing.common)
    cache = None
    if sharing.common:
        opening = torch.tensor([sharing.common], device=device)
        _, cache = run(opening, torch.ones_like(opening), torch.arange(seen, device=device).unsqueeze(0), None, 1)
        cache.batch_select_indices(torch.zeros(count, dtype=torch.long, device=device))
    width = max(len(r) for r in sharing.remainders)
    remainder = torch.tensor([[0] * (width - len(r)) + r for r in sharing.remainders], device=device)
    remainder_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in sharing.remainders], device=device)
    history = torch.ones(count, seen, dtype=remainder_mask.dtype, device=device)
    responses, response_mask = sequence_ids[:, prompt_width:-1], sequence_mask[:, prompt_width:-1]
    if not sharing.grouped:  # every prompt distinct (rows in ``first`` order): its rest and its response in one pass
        order = torch.argsort(sharing.first)
        rest, rest_mask = remainder[order], remainder_mask[order]
        mask = torch.cat([history, rest_mask, response_mask], 1)
        outputs, _ = run(torch.cat([rest, responses], 1), mask, seen + position_ids(torch.cat([rest_mask, response_mask], 1)), cache,
                         responses.shape[1] + 1)
        return outputs
    last_prompt, cache = run(remainder, torch.cat([history, remainder_mask], 1), seen + position_ids(remainder_mask), cache, 1)
    if responses.shape[1] == 0:
        return last_prompt[sharing.row_of]
    cache.batch_select_indices(sharing.row_of)  # each row gets its prompt's keys and values (an index: gradients flow back)
    lengths = seen + remainder_mask.sum(1)[sharing.row_of].unsqueeze(1)
    mask = torch.cat([history[sharing.row_of], remainder_mask[sharing.row_of], response_mask], 1)
    rest, _ = run(responses, mask, lengths + position_ids(torch.ones_like(response_mask)), cache, responses.shape[1])
    return torch.cat([last_prompt[sharing.row_of], rest], 1)


def _causal_lm_run(model) -> StageRun:
    keyword = _cache_keyword(model)

    def run(input_ids, attention_mask, positions, cache, keep):
        output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True, logits_to_keep=keep,
                       **({keyword: cache} if cache is not None else {}))
        return output.logits, output.get("cache", output.get("past_key_values"))

    return run


def _body_run(body) -> StageRun:
    keyword = _cache_keyword(body)

    def run(input_ids, attention_mask, positions, cache, keep):
        output = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True,
                      **({keyword: cache} if cache is not None else {}))
        return output.last_hidden_state[:, -keep:], output.get("cache", output.get("past_key_values"))

    return run


def _body_and_head(model):
    body = getattr(model, model.base_model_prefix, None)
    head = getattr(model, "score", None)
    if body is None or head is None:
        raise ConfigError(f"{type(model).__name__} has no '{model.base_model_prefix}' body with a 'score' head; "
                          "expected an AutoModelForSequenceClassification with one label")
    return body, head


def _cache_keyword(model) -> str:
    """The keyword a model's forward() takes a key/value cache by: 'cache' in newer transformers, 'past_key_values' before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
