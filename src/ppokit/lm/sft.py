"""Supervised fine-tuning: next-token cross-entropy on the completion tokens only."""

from __future__ import annotations

import torch

from ppokit.lm.encoding import check_length, encode_prompt, encode_response
from ppokit.lm.models import load_causal_lm
from ppokit.lm.sequences import causal_inputs, pad_sequences
from ppokit.lm.supervised_loop import SupervisedTrainer, train_epochs

IGNORE = -100  # label of prompt and padding positions: no loss there


class SFTTrainer(SupervisedTrainer):
    """Fine-tunes ``config.model`` (or the given model) on (prompt, completion) rows; ``train()`` returns the losses."""

    row_kind, row_name = "sft", "row"

    def _load_model(self, name_or_path, tokenizer):
        return load_causal_lm(name_or_path, tokenizer)

    def _encode(self, row: dict, limit: int | None, where: str) -> tuple[list[int], int]:
        prompt = encode_prompt(self.tokenizer, row["prompt"])
        completion = encode_response(self.tokenizer, row["completion"], add_eos=self.config.add_eos)
        check_length(len(prompt) + len(completion), limit, where, "prompt + completion")
        return prompt + completion, len(prompt)

    def _batch(self, examples: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        ids, mask = pad_sequences([tokens for tokens, _ in examples], self.tokenizer.pad_token_id, side="right")
        labels = ids.clone()
        labels[mask == 0] = IGNORE
        for row, (_, prompt_length) in enumerate(examples):
            labels[row, :prompt_length] = IGNORE
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Mean cross-entropy over completion tokens, and how many there were."""
        logits = self.model(input_ids=batch["input_ids"], **causal_inputs(batch["attention_mask"])).logits
        targets = batch["labels"][:, 1:]
        count = int((targets != IGNORE).sum())
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                                 ignore_index=IGNORE, reduction="sum")
        return loss / max(count, 1), count

    @torch.no_grad()
    def evaluate(self) -> float:
        """Token-weighted mean completion loss on the held-out rows (NaN without any)."""
        if not self.eval_examples:
            return float("nan")
        self.model.eval()
        total, tokens = 0.0, 0
        for start in range(0, len(self.eval_examples), self.config.batch_size):
            loss, count = self.loss(self._batch(self.eval_examples[start : start + self.config.batch_size]))
            total += float(loss) * count
            tokens += count
        return total / max(tokens, 1)

    def train(self) -> dict[str, float]:
        last = {}

        def step_loss(examples):
            loss, _ = self.loss(self._batch(examples))
            last["train/loss"] = float(loss.detach())
            return loss, dict(last)

        eval_before = self.evaluate()
        steps = train_epochs(self.model, self.config, self.train_examples, step_loss, lambda: {"eval/loss": self.evaluate()}, self.run_dir,
                             ["train/loss", "eval/loss"], ["train/loss", "eval/loss"], "sft", self.progress, self.verbose)
        result = {"train_loss": last.get("train/loss", float("nan")), "eval_loss_before": eval_before, "eval_loss": self.evaluate(), "steps": steps}
        return self._finish(result)
