"""Sampling responses from a causal LM: temperature, top-k, top-p, greedy, with the KV cache."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ppokit.lm.encoding import encode_prompt
from ppokit.lm.sequences import pad_sequences, truncate_at_eos


@dataclass
class GenerationSettings:
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False


# generation settings a model's generation_config may set, at the values that leave the model's distribution untouched
NEUTRAL_LOGITS = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0}
NEUTRAL_SAMPLING = {"typical_p": 1.0, "min_p": 0.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}


@torch.no_grad()
def sample_responses(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, settings: GenerationSettings,
                     eos_id: int, pad_id: int, synced: bool = False) -> torch.Tensor:
    """Raw generated tokens [B, R] after left-padded prompts (not yet cut at EOS).

    Responses are sampled from softmax(logits / temperature) (cut to top_k / top_p where set): the distribution
    PPO's log-probs score. Every other sampling setting a model's generation_config may carry (a repetition
    penalty, its own top-k, ...) is switched off here, and the pad token, which is not a word, is never sampled
    (its log-probability is -inf in the scoring too). Past key/values are cached, so each new token costs one
    forward pass over one position. ``synced``: a model sharded over the processes (FSDP) computes only when
    they all do, so every process steps until the last one is done.
    """
    was_training = model.training
    model.eval()
    options = NEUTRAL_LOGITS | ({"do_sample": False} if settings.greedy else {
        "do_sample": True, "temperature": settings.temperature, "top_k": settings.top_k, "top_p": settings.top_p, **NEUTRAL_SAMPLING})
    unsampled = unsampled_token(pad_id, eos_id)
    output = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=settings.max_new_tokens, eos_token_id=eos_id,
                            pad_token_id=pad_id, use_cache=True, suppress_tokens=None if unsampled is None else [unsampled], synced_gpus=synced,
                            **options)
    model.train(was_training)
    return output[:, prompt_ids.shape[1]:]


def unsampled_token(pad_id: int | None, eos_id: int | None) -> int | None:
    """The token generation never samples and scoring gives probability 0: the pad token, unless it is also the EOS
    (a chat model whose tokenizer pads with its end of turn), which ends every response and must stay sampled."""
    return None if pad_id is None or pad_id == eos_id else pad_id


def generate(model, tokenizer, prompts: list, settings: GenerationSettings | None = None) -> list[str]:
    """Texts of the responses to ``prompts`` (strings, or message lists rendered with the chat
    template), cut at EOS, special tokens removed; computed on the model's device."""
    settings = settings or GenerationSettings()
    device = next(model.parameters()).device
    ids, mask = pad_sequences([encode_prompt(tokenizer, p, f"prompt {i + 1}") for i, p in enumerate(prompts)], tokenizer.pad_token_id,
                              side="left", device=device)
    raw = sample_responses(model, ids, mask, settings, tokenizer.eos_token_id, tokenizer.pad_token_id)
    responses, response_mask, _ = truncate_at_eos(raw.cpu(), tokenizer.eos_token_id, tokenizer.pad_token_id)
    return [tokenizer.decode(r[m.bool()].tolist(), skip_special_tokens=True) for r, m in zip(responses, response_mask)]
