"""Chat rows: message lists ``[{"role", "content"}, ...]`` rendered with the tokenizer's chat template.

A conversation becomes token ids plus a flag per token that says whether the assistant wrote it (SFT
trains on those only). Each piece of text is tokenized on its own, in order: the text before an
assistant turn is exactly what ``add_generation_prompt=True`` renders for that point of the
conversation, so SFT sees the same prompt tokens that PPO and generation will feed the model.
"""

from __future__ import annotations

from ppokit.errors import ConfigError

Messages = list  # list of {"role": str, "content": str}


def require_chat_template(tokenizer, where: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ConfigError(f"{where}: the row holds chat messages, but the tokenizer {name!r} has no chat template; "
                          "use a tokenizer with one (tokenizer.chat_template) or rows of plain strings")


def render(tokenizer, messages: Messages, where: str, add_generation_prompt: bool = False) -> str:
    require_chat_template(tokenizer, where)
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as exc:  # jinja2 raises its own errors (e.g. a template that requires alternating roles)
        raise ConfigError(f"{where}: the chat template could not render the messages ({type(exc).__name__}: {exc})") from None


def encode_chat_prompt(tokenizer, messages: Messages, where: str) -> list[int]:
    """The prompt of a PPO or generation row: the conversation so far plus the assistant's opening."""
    return _tokens(tokenizer, render(tokenizer, messages, where, add_generation_prompt=True))


def encode_conversation(tokenizer, messages: Messages, where: str, add_eos: bool = True) -> tuple[list[int], list[bool]]:
    """Token ids of a whole conversation and, per token, whether it belongs to an assistant turn.

    An assistant turn ends after the first EOS in it (the template's end-of-turn, when that is EOS);
    with ``add_eos`` a turn the template does not end with EOS gets one, so the model learns to stop.
    """
    full = render(tokenizer, messages, where)
    eos = tokenizer.eos_token
    pieces: list[tuple[str, bool]] = []
    cursor = 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:index], where, add_generation_prompt=True) if index else ""
        through = render(tokenizer, messages[: index + 1], where)
        if not (full.startswith(through) and through.startswith(before) and len(before) >= cursor):
            raise ConfigError(f"{where}: the chat template does not render the conversation up to each assistant turn as a prefix "
                              "of the whole; ppokit cannot tell which tokens the assistant wrote")
        reply = through[len(before):]
        if eos and eos in reply:
            reply = reply[: reply.index(eos) + len(eos)]
        pieces += [(full[cursor : len(before)], False), (reply, True)]
        cursor = len(before) + len(reply)
    pieces.append((full[cursor:], False))

    ids: list[int] = []
    trained: list[bool] = []
    for text, is_reply in pieces:
        tokens = _tokens(tokenizer, text) if text else []
        if is_reply and add_eos and tokenizer.eos_token_id not in tokens:
            tokens.append(tokenizer.eos_token_id)
        ids += tokens
        trained += [is_reply] * len(tokens)
    return ids, trained


def _tokens(tokenizer, text: str) -> list[int]:
    # the template writes the special tokens (BOS, turn markers) itself
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
