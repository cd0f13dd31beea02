"""The data one PPO update of a language model works on, typed, and how it is sampled.

``Responses``: sampled responses as token lists with their prompts and the reward of each finished
text, one row per response; the responses to one prompt (a group) are consecutive rows. Rows can be
taken and joined, which is what dynamic sampling does across generation rounds.

``Rollout``: the same rows padded into tensors (prompts left-padded, so every generation starts at
one column; responses right-padded), and the fields each later stage fills in: the scoring pass
(old log-probs, reference log-probs, values), reward shaping (scores, per-token KL and rewards) and
the advantage estimator (advantages, returns). ``samples()`` hands the update its per-sequence tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ppokit.lm.generation import GenerationSettings, sample_responses
from ppokit.lm.sequences import pad_sequences, truncate_at_eos


@dataclass
class Responses:
    prompt_indices: list[int]
    """Index of each row's prompt in the trainer's prompt list."""
    prompts: list
    """Each row's prompt: a string, or a chat message list."""
    prompt_tokens: list[list[int]]
    response_tokens: list[list[int]]
    """The response's tokens, cut after its first EOS (which is kept)."""
    texts: list[str]
    """The decoded responses (special tokens removed): what reward functions read."""
    has_eos: torch.Tensor
    """[B] bool: the response ended with EOS (not cut at max_new_tokens)."""
    raw_scores: torch.Tensor | None = None
    """[B] float32: the reward of each finished text, before penalties and normalization."""

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: list[int]) -> Responses:
        index = torch.tensor(rows, dtype=torch.long, device=self.has_eos.device)
        return Responses([self.prompt_indices[r] for r in rows], [self.prompts[r] for r in rows], [self.prompt_tokens[r] for r in rows],
                         [self.response_tokens[r] for r in rows], [self.texts[r] for r in rows], self.has_eos[index],
                         None if self.raw_scores is None else self.raw_scores[index])

    @classmethod
    def join(cls, parts: list[Responses]) -> Responses:
        scored = all(part.raw_scores is not None for part in parts)
        return cls([i for p in parts for i in p.prompt_indices], [x for p in parts for x in p.prompts], [t for p in parts for t in p.prompt_tokens],
                   [t for p in parts for t in p.response_tokens], [t for p in parts for t in p.texts], torch.cat([p.has_eos for p in parts]),
                   torch.cat([p.raw_scores for p in parts]) if scored else None)


@dataclass
class Rollout:
    responses: Responses
    group_ids: torch.Tensor
    """[B] long: rows sampled for the same prompt of this batch share an id."""
    sequence_ids: torch.Tensor
    """[B, L] prompt (left-padded) then response (right-padded)."""
    sequence_mask: torch.Tensor
    """[B, L] 1 on real tokens."""
    response_ids: torch.Tensor
    """[B, R] the response part of sequence_ids."""
    mask: torch.Tensor
    """[B, R] float: 1 on real response tokens."""
    prompt_width: int
    """Columns of sequence_ids taken by the (padded) prompts."""
    # the scoring pass
    logprobs: torch.Tensor | None = None
    """[B, R] the policy's log-probs at sampling time; None when the update takes them from its own first pass."""
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    # reward shaping and the advantage estimator
    scores: torch.Tensor | None = None
    """[B] the scores the estimator sees: raw scores, minus the missing-EOS penalty, normalized."""
    kl: torch.Tensor | None = None
    """[B, R] per-token KL estimate to the reference at sampling time (where the old log-probs were scored)."""
    token_rewards: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)
    """Statistics of how the rollout was collected (dynamic sampling), for the log."""

    def __len__(self) -> int:
        return len(self.responses)

    @property
    def prompts(self) -> list:
        return self.responses.prompts

    @property
    def texts(self) -> list[str]:
        return self.responses.texts

    @property
    def has_eos(self) -> torch.Tensor:
        return self.responses.has_eos

    def samples(self, kl_in_loss: bool = False) -> dict[str, torch.Tensor]:
        """The update's per-sequence tensors (``ppokit.core.update.ppo_update``'s samples); the reference's log-probs only
        where the KL to it is a term of the loss."""
        samples = {"sequence_ids": self.sequence_ids, "sequence_mask": self.sequence_mask, "responses": self.response_ids, "mask": self.mask,
                   "advantages": self.advantages}
        optional = {"logprobs": self.logprobs, "ref_logprobs": self.ref_logprobs if kl_in_loss else None}
        if self.values is not None:
            optional |= {"values": self.values * self.mask, "returns": self.returns}
        return samples | {name: tensor for name, tensor in optional.items() if tensor is not None}


def pad_responses(responses: Responses, group_ids: torch.Tensor, pad_id: int, device: torch.device) -> Rollout:
    """The rows as one padded batch of tensors on ``device``."""
    prompt_ids, prompt_mask = pad_sequences(responses.prompt_tokens, pad_id, side="left", device=device)
    response_ids, response_mask = pad_sequences(responses.response_tokens, pad_id, side="right", device=device)
    return Rollout(responses, group_ids.to(device), torch.cat([prompt_ids, response_ids], 1), torch.cat([prompt_mask, response_mask], 1),
                   response_ids, response_mask.float(), prompt_ids.shape[1])


def sample(policy, tokenizer, prompt_indices: list[int], prompts: list, prompt_tokens: list[list[int]], settings: GenerationSettings,
           precision, device: torch.device, chunk: int | None = None, synced: bool = False) -> Responses:
    """Generate (``chunk`` prompts at a time: it bounds the KV cache) and cut each response after its first EOS."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    prompt_ids, prompt_mask = pad_sequences(prompt_tokens, pad, side="left", device=device)
    chunk = chunk or len(prompt_tokens)
    with precision.autocast():
        parts = [sample_responses(policy, prompt_ids[start : start + chunk], prompt_mask[start : start + chunk], settings, eos, pad, synced=synced)
                 for start in range(0, len(prompt_tokens), chunk)]
    width = max(part.shape[1] for part in parts)  # chunks whose responses all ended early are shorter
    raw = torch.cat([torch.nn.functional.pad(part, (0, width - part.shape[1]), value=pad) for part in parts])
    cut, response_mask, has_eos = truncate_at_eos(raw, eos, pad)
    cut, lengths = cut.cpu(), response_mask.sum(1).cpu().tolist()
    tokens = [row[:length].tolist() for row, length in zip(cut, lengths)]
    texts = [tokenizer.decode(row, skip_special_tokens=True) for row in tokens]
    return Responses(list(prompt_indices), list(prompts), [list(t) for t in prompt_tokens], tokens, texts, has_eos)
