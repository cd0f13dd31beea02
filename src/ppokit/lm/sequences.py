"""Token-level tensor helpers: padding, positions, EOS truncation, log-probs (the last real token: ``ppokit.core.batch``).

Conventions: prompts are left-padded (so every generation starts at the same column), responses are
right-padded; masks are 1 on real tokens and 0 on padding; padding is never inferred from the pad id
(a model may sample that id), always from the lengths ppokit tracks.
"""

from __future__ import annotations

import torch


def pad_sequences(sequences: list[list[int]], pad_id: int, side: str = "right", device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into (ids, attention_mask), padding on ``side`` ('left' or 'right'), on ``device``.

    Built on the CPU and moved in one copy each: row-by-row writes into a GPU tensor cost a launch per row.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    width = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long, device="cpu")
    mask = torch.zeros((len(sequences), width), dtype=torch.long, device="cpu")
    for row, tokens in enumerate(sequences):
        if not tokens:
            continue
        span = slice(width - len(tokens), width) if side == "left" else slice(0, len(tokens))
        ids[row, span] = torch.tensor(tokens, dtype=torch.long, device="cpu")
        mask[row, span] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so a left-padded row starts at position 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def causal_inputs(attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mask and position keyword arguments for a causal LM's forward on a padded batch.

    When every row's padding only trails its real tokens (no left padding), the padding cannot reach
    a real position through causal attention, so no mask or positions are passed: the outputs at real
    positions are the same and the model takes its faster unmasked causal path. Outputs at padded
    positions are then meaningless; callers mask them out.
    """
    mask = attention_mask.long()
    if bool(mask[:, 0].all()) and bool((mask[:, 1:] <= mask[:, :-1]).all()):
        return {}
    return {"attention_mask": attention_mask, "position_ids": position_ids(attention_mask)}


def truncate_at_eos(responses: torch.Tensor, eos_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut each response after its first EOS (kept as the last real token).

    Returns (responses with pad after the EOS, response mask, has_eos per row). A response without
    EOS keeps all its tokens; the caller decides its penalty.
    """
    is_eos = responses == eos_id
    has_eos = is_eos.any(-1)
    length = torch.where(has_eos, is_eos.long().argmax(-1) + 1, torch.full_like(has_eos, responses.shape[-1], dtype=torch.long))
    columns = torch.arange(responses.shape[-1], device=responses.device)
    mask = (columns.unsqueeze(0) < length.unsqueeze(1)).long()
    return torch.where(mask.bool(), responses, torch.full_like(responses, pad_id)), mask, has_eos


def sampling_logprobs(logits: torch.Tensor, temperature: float = 1.0, suppressed: int | None = None) -> torch.Tensor:
    """log-probabilities [..., V] of the distribution responses are sampled from: softmax(logits / temperature), with the
    ``suppressed`` token (the pad token, which generation never samples) at probability 0."""
    scaled = logits.float() / temperature  # a new tensor: the in-place fill below touches nothing autograd keeps
    if suppressed is not None:
        scaled[..., suppressed] = float("-inf")
    return torch.log_softmax(scaled, dim=-1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0, suppressed: int | None = None) -> torch.Tensor:
    """log p(token) under the distribution the tokens were sampled from (``sampling_logprobs``)."""
    return gather_tokens(sampling_logprobs(logits, temperature, suppressed), tokens, suppressed)


def gather_tokens(logp: torch.Tensor, tokens: torch.Tensor, suppressed: int | None = None) -> torch.Tensor:
    """The log-probabilities of ``tokens``; 0 where a token is the suppressed one: no sampled token is, so it is padding
    (whose -inf would turn into NaN under the mask)."""
    picked = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked if suppressed is None else picked.masked_fill(tokens == suppressed, 0.0)
