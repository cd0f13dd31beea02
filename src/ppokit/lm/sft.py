"""Supervised fine-tuning: next-token cross-entropy on the completion tokens only (for chat rows, the
assistant's turns)."""

from __future__ import annotations

import torch

from ppokit.lm.chat import encode_conversation
from ppokit.lm.config import SFTConfig
from ppokit.lm.encoding import check_length, encode_prompt_and_response
from ppokit.lm.models import load_causal_lm
from ppokit.lm.sequences import causal_inputs, pad_sequences
from ppokit.lm.supervised_loop import SupervisedTrainer

IGNORE = -100  # label of prompt and padding positions: no loss there


class SFTTrainer(SupervisedTrainer):
    """Fine-tunes ``config.model`` (or the given model) on (prompt, completion) or chat rows; ``train()`` returns the losses."""

    row_kind, row_name, trainer_name, config_class = "sft", "row", "sft", SFTConfig
    columns = summary_keys = ["train/loss", "eval/loss"]

    def _load_model(self, name_or_path, tokenizer, dtype):
        return load_causal_lm(name_or_path, tokenizer, dtype)

    def _encode(self, row: dict, limit: int | None, where: str) -> tuple[list[int], list[bool]]:
        """Token ids and, per token, whether the loss is taken on it."""
        if "messages" in row:
            ids, trained = encode_conversation(self.tokenizer, row["messages"], where, add_eos=self.config.add_eos)
        else:
            ids, trained = encode_prompt_and_response(self.tokenizer, row["prompt"], row["completion"], where, add_eos=self.config.add_eos)
        check_length(len(ids), limit, where, "prompt + completion")
        return ids, trained

    def _batch(self, examples: list[tuple[list[int], list[bool]]]) -> dict[str, torch.Tensor]:
        ids, mask = pad_sequences([tokens for tokens, _ in examples], self.tokenizer.pad_token_id, side="right", device=self.device)
        trained, _ = pad_sequences([[int(t) for t in flags] for _, flags in examples], 0, side="right", device=self.device)
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(trained == 0, IGNORE)}

    def loss_sum(self, batch: dict[str, torch.Tensor], model=None) -> tuple[torch.Tensor, int]:
        """Cross-entropy summed over completion tokens (in float32), and how many there were; ``model``: what
        computes the logits (default the model; training, its data-parallel wrapper)."""
        with self.precision.autocast():
            logits = (model or self.scorer)(input_ids=batch["input_ids"], use_cache=False, **causal_inputs(batch["attention_mask"])).logits
        targets = batch["labels"][:, 1:]
        count = int((targets != IGNORE).sum())
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                                 ignore_index=IGNORE, reduction="sum")
        return loss, count

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Mean cross-entropy over completion tokens (in float32), and how many there were."""
        total, count = self.loss_sum(batch)
        return total / max(count, 1), count

    @torch.no_grad()
    def evaluate(self) -> float:
        """Token-weighted mean completion loss on the held-out rows (NaN without any)."""
        if not self.eval_examples:
            return float("nan")
        self.model.eval()
        total, tokens = 0.0, 0
        for start in range(0, len(self.eval_examples), self.config.batch_size):
            loss, count = self.loss_sum(self._batch(self.eval_examples[start : start + self.config.batch_size]))
            total += float(loss)
            tokens += count
        return total / max(tokens, 1)

    def step_terms(self, examples):
        loss, count = self.loss_sum(self._batch(examples), self.trained)
        return loss, float(count), {"train/loss": float(loss.detach())}

    def held_out(self) -> dict[str, float]:
        return {"eval/loss": self.evaluate()}

    def summarize(self, before, after):
        return {"train_loss": self.last_stats.get("train/loss", float("nan")), "eval_loss_before": before["eval/loss"], "eval_loss": after["eval/loss"]}
