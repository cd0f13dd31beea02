"""The reward model: a scalar head on a transformer body, trained on preference pairs with the
Bradley-Terry loss -log sigmoid(score(chosen) - score(rejected)).

The score of a sequence is the head's output at its last real token, found from the attention mask,
so it is right for left- and right-padded batches alike (and never depends on where the pad id is).
"""

from __future__ import annotations

import torch

from ppokit.core.batch import last_token_index
from ppokit.errors import ConfigError
from ppokit.lm.config import RewardModelConfig
from ppokit.lm.encoding import check_length, encode_prompt_and_response
from ppokit.lm.models import load_scalar_model
from ppokit.lm.parallel import Forwarding
from ppokit.lm.sequences import causal_inputs, pad_sequences
from ppokit.lm.supervised_loop import SupervisedTrainer


def token_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The scalar head at every position, [B, T]: per-token values for a value model."""
    body = getattr(model, model.base_model_prefix, None)
    head = getattr(model, "score", None)
    if body is None or head is None:
        raise ConfigError(f"{type(model).__name__} has no '{model.base_model_prefix}' body with a 'score' head; "
                          "expected an AutoModelForSequenceClassification with one label")
    hidden = body(input_ids=input_ids, use_cache=False, **causal_inputs(attention_mask)).last_hidden_state
    return head(hidden).squeeze(-1).float()


def sequence_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One score per sequence, [B], read at its last real token."""
    scores = token_scores(model, input_ids, attention_mask)
    return scores.gather(1, last_token_index(attention_mask).unsqueeze(1)).squeeze(1)


class RewardModelTrainer(SupervisedTrainer):
    """Trains ``config.model`` with a one-label scalar head on (prompt, chosen, rejected) rows, plain or chat."""

    row_kind, row_name, trainer_name, config_class = "preference", "pair", "reward_model", RewardModelConfig
    columns = ["train/loss", "train/accuracy", "train/margin", "eval/loss", "eval/accuracy"]
    summary_keys = ["train/loss", "train/accuracy", "eval/accuracy"]

    def _load_model(self, name_or_path, tokenizer, dtype):
        return load_scalar_model(name_or_path, tokenizer, dtype)

    def _scorer(self, model):
        return Forwarding(model, sequence_scores)  # a function of the body and head: DDP and FSDP need it as a forward()

    def _encode(self, row: dict, limit: int | None, where: str) -> tuple[list[int], list[int]]:
        chosen, _ = encode_prompt_and_response(self.tokenizer, row["prompt"], row["chosen"], where)
        rejected, _ = encode_prompt_and_response(self.tokenizer, row["prompt"], row["rejected"], where)
        check_length(max(len(chosen), len(rejected)), limit, where, "prompt + response")
        return chosen, rejected

    def pair_scores(self, pairs: list[tuple[list[int], list[int]]], scorer=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of the chosen and the rejected responses; ``scorer``: what computes them (default the model's
        scores; training, their data-parallel wrapper)."""
        sequences = [c for c, _ in pairs] + [r for _, r in pairs]
        ids, mask = pad_sequences(sequences, self.tokenizer.pad_token_id, side=self.config.padding_side, device=self.device)
        with self.precision.autocast():
            scores = (scorer or self.scorer)(ids, mask)
        return scores[: len(pairs)], scores[len(pairs) :]

    @torch.no_grad()
    def evaluate(self, pairs: list | None = None) -> dict[str, float]:
        """Pairwise accuracy (ties count half) and mean loss on held-out pairs."""
        pairs = self.eval_examples if pairs is None else pairs
        if not pairs:
            return {"accuracy": float("nan"), "loss": float("nan")}
        self.model.eval()
        correct, loss = 0.0, 0.0
        for start in range(0, len(pairs), self.config.batch_size):
            chosen, rejected = self.pair_scores(pairs[start : start + self.config.batch_size])
            margin = chosen - rejected
            correct += float((margin > 0).sum() + 0.5 * (margin == 0).sum())
            loss += float(-torch.nn.functional.logsigmoid(margin).sum())
        return {"accuracy": correct / len(pairs), "loss": loss / len(pairs)}

    def step_terms(self, pairs):
        chosen, rejected = self.pair_scores(pairs, self.trained)
        margin = chosen - rejected
        loss = -torch.nn.functional.logsigmoid(margin).sum()
        if self.config.center_rewards_coef:
            loss = loss + self.config.center_rewards_coef * ((chosen + rejected) ** 2).sum()
        margin = margin.detach()
        return loss, float(len(pairs)), {"train/loss": float(loss.detach()), "train/accuracy": float((margin > 0).sum()), "train/margin": float(margin.sum())}

    def held_out(self) -> dict[str, float]:
        result = self.evaluate()
        return {"eval/loss": result["loss"], "eval/accuracy": result["accuracy"]}

    def summarize(self, before, after):
        return {"eval_accuracy_before": before["eval/accuracy"], "eval_accuracy": after["eval/accuracy"], "eval_loss": after["eval/loss"]}
