"""What SFT and the reward model share: their set-up (settings, tokenizer, model, encoded rows) and
their training loop, shuffled epochs of AdamW steps with a linearly decaying learning rate, a
held-out evaluation at each epoch's end, logs and checkpoints."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Callable

import torch

from ppokit.lm.checkpoints import save_training_state
from ppokit.lm.config import apply_run_settings
from ppokit.lm.data import train_and_eval_rows
from ppokit.lm.models import context_length, load_tokenizer, resize_for_tokenizer, save_pretrained
from ppokit.logging import MetricsLogger


class SupervisedTrainer:
    """Set-up of a trainer on (prompt, ...) rows. Subclasses name the row kind and how to load the
    model and encode one row; rows that do not fit are errors naming the row."""

    row_kind = ""  # the data kind load_rows checks: "sft" or "preference"
    row_name = ""  # how errors call one row: "row" or "pair"

    def __init__(self, config, run_dir: str | Path | None = None, model=None, tokenizer=None,
                 train_rows: list[dict] | None = None, eval_rows: list[dict] | None = None,
                 progress: bool | None = None, verbose: bool = True):
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        apply_run_settings(config)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.model)
        self.model = model if model is not None else self._load_model(config.model, self.tokenizer)
        resize_for_tokenizer(self.model, self.tokenizer)
        train_rows, eval_rows = train_and_eval_rows(config, self.row_kind, train_rows, eval_rows)
        limit = config.max_length or context_length(self.model)
        self.train_examples = [self._encode(row, limit, f"training {self.row_name} {i + 1}") for i, row in enumerate(train_rows)]
        self.eval_examples = [self._encode(row, limit, f"evaluation {self.row_name} {i + 1}") for i, row in enumerate(eval_rows or [])]
        self.progress, self.verbose = progress, verbose

    def save(self, directory: str | Path) -> Path:
        return save_pretrained(self.model, self.tokenizer, directory)

    def _finish(self, result: dict[str, float]) -> dict[str, float]:
        """Save the model and results.json into the run dir, if there is one; returns ``result``."""
        if self.run_dir is not None:
            self.save(self.run_dir / "model")
            (self.run_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        return result

    def _load_model(self, name_or_path, tokenizer):
        raise NotImplementedError

    def _encode(self, row: dict, limit: int | None, where: str):
        raise NotImplementedError


def train_epochs(model, config, examples: list, step_loss: Callable[[list], tuple[torch.Tensor, dict[str, float]]],
                 evaluate: Callable[[], dict[str, float]], run_dir: Path | None, columns: list[str], summary_keys: list[str],
                 name: str, progress: bool | None, verbose: bool) -> int:
    """Train ``model`` on ``examples``; returns the number of optimizer steps.

    ``step_loss(batch)`` gives the loss to minimize and the row's training stats; ``evaluate()`` the
    held-out stats logged at the end of each epoch. ``name`` labels errors and checkpoints.
    """
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))
    logger = MetricsLogger(run_dir, ["step", "epoch", *columns, "train/learning_rate", "train/grad_norm"], total=total_steps, unit="step",
                           tensorboard=config.tensorboard, progress=progress, console=verbose, log_interval=config.log_interval)
    order = random.Random(config.seed)
    step = 0
    try:
        for epoch in range(config.epochs):
            indices = list(range(len(examples)))
            order.shuffle(indices)
            model.train()
            for start in range(0, len(indices), config.batch_size):
                loss, stats = step_loss([examples[i] for i in indices[start : start + config.batch_size]])
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{name} loss is {float(loss)} at step {step + 1}; lower learning_rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm or float("inf"))
                optimizer.step()
                step += 1
                row = {"epoch": epoch + 1, **stats, "train/learning_rate": schedule.get_last_lr()[0], "train/grad_norm": float(grad_norm)}
                schedule.step()
                if step % steps_per_epoch == 0:
                    row |= evaluate()
                    model.train()
                logger.log(step, step, row, summary_keys)
                if run_dir is not None and config.checkpoint_interval and step % config.checkpoint_interval == 0:
                    save_training_state(run_dir, step, {name: model}, optimizer, {"trainer": name, "epoch": epoch}, config.keep_checkpoints)
    finally:
        logger.close()
    model.eval()
    return step
