"""Text to token ids, the same way in every trainer: the prompt with the tokenizer's special tokens
(a BOS where the model uses one), the response without them, then EOS."""

from __future__ import annotations

from ppokit.errors import ConfigError


def encode_prompt(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def encode_response(tokenizer, text: str, add_eos: bool = True) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids + [tokenizer.eos_token_id] if add_eos else ids


def check_length(length: int, limit: int | None, where: str, what: str) -> None:
    if limit is not None and length > limit:
        raise ConfigError(f"{where}: {what} is {length} tokens, longer than the limit of {limit} (the model's context or max_length)")
