"""Text to token ids, the same way in every trainer: a plain prompt with the tokenizer's special tokens
(a BOS where the model uses one), the response without them, then EOS; a chat prompt (a list of
messages) through the tokenizer's chat template (ppokit.lm.chat)."""

from __future__ import annotations

from ppokit.errors import ConfigError
from ppokit.lm.chat import encode_chat_prompt, encode_conversation


def encode_prompt(tokenizer, prompt: str | list, where: str = "prompt") -> list[int]:
    if isinstance(prompt, list):
        return encode_chat_prompt(tokenizer, prompt, where)
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def encode_response(tokenizer, text: str, add_eos: bool = True) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids + [tokenizer.eos_token_id] if add_eos else ids


def encode_prompt_and_response(tokenizer, prompt: str | list, response: str | list, where: str, add_eos: bool = True) -> tuple[list[int], list[bool]]:
    """Ids of prompt + response and, per token, whether it is the response's (what SFT trains and a reward model scores).

    Plain rows: a string prompt and a string response. Chat rows: message lists, the response being
    the assistant turn(s) that follow the prompt's messages.
    """
    if isinstance(response, list):
        return encode_conversation(tokenizer, list(prompt or []) + response, where, add_eos)
    if isinstance(prompt, list):  # a chat prompt answered in plain text (PPO's responses)
        return encode_conversation(tokenizer, prompt + [{"role": "assistant", "content": response}], where, add_eos)
    prompt_ids = encode_prompt(tokenizer, prompt, where)
    response_ids = encode_response(tokenizer, response, add_eos)
    return prompt_ids + response_ids, [False] * len(prompt_ids) + [True] * len(response_ids)


def check_length(length: int, limit: int | None, where: str, what: str) -> None:
    if limit is not None and length > limit:
        raise ConfigError(f"{where}: {what} is {length} tokens, longer than the limit of {limit} (the model's context or max_length)")
