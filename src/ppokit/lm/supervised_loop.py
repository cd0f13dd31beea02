"""What SFT and the reward model share: their set-up (settings, device, precision, tokenizer, model,
encoded rows) and their training loop, shuffled epochs of AdamW steps with a linearly decaying
learning rate, a held-out evaluation at each epoch's end, logs, checkpoints and exact resume.

Data parallel under torchrun (``ppokit.lm.parallel``): every rank draws the same global batch and
computes the loss on its slice, weighted by its share of the global count of tokens (SFT) or pairs
(reward model), so that the gradients DDP (or FSDP2) averages are those of the global mean; the
logged statistics are global, and rank 0 alone writes. Every rank evaluates all held-out rows.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ppokit.distributed import current_world
from ppokit.errors import CheckpointError, ConfigError
from ppokit.lm.checkpoints import (
    load_training_state,
    python_random_state,
    restore_training_state,
    resume_overrides,
    save_training_state,
    set_python_random_state,
    trainable_parameters,
)
from ppokit.lm.config import apply_run_settings
from ppokit.lm.data import train_and_eval_rows
from ppokit.lm.device import rank_device, resolve_device, write_run_info
from ppokit.lm.models import context_length, enable_gradient_checkpointing, load_tokenizer, resize_for_tokenizer, save_pretrained
from ppokit.lm.parallel import data_parallel, rank_seed, rank_share, reshard, save_sharded
from ppokit.lm.precision import Precision
from ppokit.run_logging import MetricsLogger
from ppokit.training_loop import LoopPlan, run_training_loop


class SupervisedTrainer:
    """A trainer on rows of one kind. Subclasses name the row kind, load the model, encode one row,
    give the loss of a batch and the held-out metrics; rows that do not fit are errors naming the row."""

    row_kind = ""  # the data kind load_rows checks: "sft" or "preference"
    row_name = ""  # how errors call one row: "row" or "pair"
    trainer_name = ""  # written into checkpoints, checked on resume
    config_class: type = type(None)  # SFTConfig or RewardModelConfig
    columns: list[str] = []  # progress.csv columns besides step, epoch, learning rate and gradient norm
    summary_keys: list[str] = []  # shown on the progress bar and the console

    def __init__(self, config, run_dir: str | Path | None = None, model=None, tokenizer=None,
                 train_rows: list[dict] | None = None, eval_rows: list[dict] | None = None,
                 progress: bool | None = None, verbose: bool = True):
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        apply_run_settings(config)
        device = resolve_device(config.device)
        self.world = current_world(device.type)  # data parallel under torchrun (ppokit.distributed)
        self.device = rank_device(config.device, device, self.world)
        self.world.check_same("the config", config.to_dict())
        self.sharded = self.world.distributed and config.parallel == "fsdp"
        self.precision = Precision.resolve(config.precision, self.device)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.model)
        model = model if model is not None else self._load_model(config.model, self.tokenizer, self.precision.weights_dtype)
        resize_for_tokenizer(model, self.tokenizer)
        self.model = model.to(self.device, dtype=self.precision.weights_dtype)
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(self.model)
        # ``scorer`` computes the trainer's output (held-out evaluation); ``trained``, what the gradient steps run:
        # its DDP wrapper, or the scorer itself (one process, or sharded in place by FSDP)
        self.scorer = self._scorer(self.model)
        self.trained = data_parallel(self.scorer, self.world, config.parallel)
        if self.world.rank > 0:  # the model is built (and the same on every rank): dropout with a stream of this rank's own
            torch.manual_seed(rank_seed(config.seed, self.world))
        train_rows, eval_rows = train_and_eval_rows(config, self.row_kind, train_rows, eval_rows)
        limit = config.max_length or context_length(self.model)
        self.train_examples = [self._encode(row, limit, f"{where} (training {self.row_name})") for where, row in train_rows]
        self.eval_examples = [self._encode(row, limit, f"{where} (held-out {self.row_name})") for where, row in eval_rows]
        self.progress, self.verbose = progress, verbose

        self.steps_per_epoch = math.ceil(len(self.train_examples) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.learning_rate, eps=config.adam_eps, weight_decay=config.weight_decay)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: max(0.0, 1.0 - step / self.total_steps))
        self.grad_scaler = self.precision.grad_scaler()
        self.order_rng = random.Random(config.seed)
        self.step = 0
        self.epoch_order: list[int] | None = None  # this epoch's shuffled row indices, drawn when it starts
        self.initial_eval: dict[str, float] | None = None
        self.last_stats: dict[str, float] = {}
        self.elapsed_before = 0.0  # seconds trained before a resume
        self.resumed_from: Path | None = None
        self.interrupted: str | None = None

    # ------------------------------------------------------------------ what subclasses give
    def _load_model(self, name_or_path, tokenizer, dtype):
        raise NotImplementedError

    def _scorer(self, model) -> torch.nn.Module:
        """The module whose forward() gives what the loss is taken of (the model itself, or a function of its parts)."""
        return model

    def _encode(self, row: dict, limit: int | None, where: str):
        raise NotImplementedError

    def step_terms(self, examples: list) -> tuple[torch.Tensor, float, dict[str, float]]:
        """On this rank's share of one batch: the loss summed over its units (completion tokens, pairs), their
        number, and sums over them of the logged statistics; each is divided by the global number of units."""
        raise NotImplementedError

    def held_out(self) -> dict[str, float]:
        """Metrics on the held-out rows, logged at each epoch's end."""
        raise NotImplementedError

    def summarize(self, before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """results.json from the held-out metrics before and after training."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def train(self) -> dict[str, float]:
        """Train for config.epochs (continuing a resumed run); returns results (saved in the run dir).

        After SIGINT/SIGTERM the run stops at the next step with a checkpoint, ``interrupted`` names
        the signal, and the result holds the step reached.
        """
        if self.finished:  # resumed from the checkpoint at its end: the run's outputs stay as they are
            return self._finished_result()
        if self.initial_eval is None:
            self.initial_eval = self._held_out()
        if self.run_dir is not None and self.world.is_main:
            write_run_info(self.run_dir, self.trainer_name, self.device, self.precision.name)
        self._train_epochs()
        if self.interrupted:
            return {"steps": self.step, "interrupted": self.interrupted}
        result = {**self.summarize(self.initial_eval, self._held_out()), "steps": self.step}
        if self.run_dir is not None:
            self.save(self.run_dir / "model")
            if self.world.is_main:
                (self.run_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        return result

    @property
    def finished(self) -> bool:
        """Whether every step of the planned epochs has been taken (a run resumed from its final checkpoint)."""
        return self.step >= self.total_steps

    def _finished_result(self) -> dict:
        if self.world.is_main and self.verbose:
            print(f"ppokit: this run has finished ({self.step} steps, {self.config.epochs} epochs); nothing to train. "
                  f"To train further, resume with epochs=N (the new total)")
        saved = self.run_dir / "results.json" if self.run_dir is not None else None
        return {**(json.loads(saved.read_text()) if saved is not None and saved.is_file() else {}), "steps": self.step, "finished": True}

    def _train_epochs(self) -> None:
        config = self.config
        columns = ["step", "epoch", *self.columns, "train/learning_rate", "train/grad_norm"]
        main = self.world.is_main  # data parallel: the other ranks write and show nothing
        logger = MetricsLogger(self.run_dir if main else None, columns, total=self.total_steps, unit="step", tensorboard=config.tensorboard,
                               progress=self.progress if main else False, console=self.verbose and main, log_interval=config.log_interval,
                               resume_after_step=self.step if self.resumed_from is not None else None, initial=self.step, last_step=self.total_steps)
        started = time.perf_counter()
        parameters = list(trainable_parameters(self.model).values())

        def step() -> bool:
            epoch, position = divmod(self.step, self.steps_per_epoch)
            if position == 0 or self.epoch_order is None:
                self.epoch_order = list(range(len(self.train_examples)))
                self.order_rng.shuffle(self.epoch_order)
            rows = self.epoch_order[position * config.batch_size : (position + 1) * config.batch_size]
            self.model.train()
            loss, stats = self._batch_loss(rows)
            grad_norm = self._optimizer_step(loss, parameters)
            self.step += 1
            self.last_stats = stats
            row = {"epoch": epoch + 1, **stats, "train/learning_rate": self.schedule.get_last_lr()[0], "train/grad_norm": grad_norm}
            with warnings.catch_warnings():  # a step the loss scaler skipped still moves the schedule; torch warns about that
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
                self.schedule.step()
            if self.step % self.steps_per_epoch == 0:
                row |= self._held_out()
            logger.log(self.step, self.step, row, self.summary_keys)
            return True

        checkpoint = (lambda: self.save_checkpoint(self.elapsed_before + time.perf_counter() - started)) if self.run_dir is not None else None
        plan = LoopPlan(step=step, position=lambda: self.step, end=self.total_steps, checkpoint=checkpoint, checkpoint_interval=config.checkpoint_interval,
                        message=logger.message, stop_note=self._checkpoint_note, unit="step")
        try:
            self.interrupted = run_training_loop(plan, self.world)
        finally:
            logger.close()
            self.model.eval()

    def _batch_loss(self, rows: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimize on this rank's share of a global batch, weighted so that the gradient averaged
        over the ranks is that of the global mean, and the global statistics of the batch."""
        share, weight = rank_share(rows, self.world), 1.0
        if not share:  # a last batch with fewer rows than ranks: this one computes a row at weight 0, as DDP needs every rank
            share, weight = rows[:1], 0.0
        loss_sum, units, sums = self.step_terms([self.train_examples[i] for i in share])
        local = np.array([units, float(loss_sum.detach()), *sums.values()]) * weight
        totals = self.world.sum(local)  # (one exchange a step)
        global_units = max(float(totals[0]), 1.0)
        if not math.isfinite(totals[1]):  # (every rank sees the global sum: they stop together)
            raise FloatingPointError(f"{self.trainer_name} loss is {totals[1] / global_units} at step {self.step + 1}; lower learning_rate")
        # DDP averages the ranks' gradients: the world size undoes its division
        loss = loss_sum / global_units * (weight * self.world.size)
        return loss, {name: float(total) / global_units for name, total in zip(sums, totals[2:])}

    def _held_out(self) -> dict[str, float]:
        result = self.held_out()
        reshard(self.scorer)  # (FSDP: after forward passes without a backward)
        return result

    def _optimizer_step(self, loss: torch.Tensor, parameters: list[torch.nn.Parameter]) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, self.config.max_grad_norm or float("inf"))
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)  # skipped (and the scale lowered) when the scaled gradient overflowed
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        return float(grad_norm)

    def _checkpoint_note(self) -> str:
        if self.run_dir is None:
            return "; no checkpoint (no run dir)"
        return f"; checkpoint written, continue with: ppokit lm {self.cli_name} --resume {self.run_dir}"

    @property
    def cli_name(self) -> str:
        return {"sft": "sft", "reward_model": "rm"}[self.trainer_name]

    # ------------------------------------------------------------------ saving and resuming
    def save(self, directory: str | Path) -> Path:
        """The model and tokenizer; data parallel, every rank calls this (FSDP gathers the shards) and rank 0 alone writes."""
        if self.sharded:
            return save_sharded(self.model, self.tokenizer, directory, self.world)
        return save_pretrained(self.model, self.tokenizer, directory) if self.world.is_main else Path(directory)

    def save_checkpoint(self, elapsed: float) -> Path | None:
        """Every rank calls this; rank 0 writes (with every rank's random streams) and returns the folder, the others None."""
        state = {"trainer": self.trainer_name, "config": self.config.to_dict(), "device": str(self.device), "precision": self.precision.name,
                 "order_rng": python_random_state(self.order_rng), "epoch_order": self.epoch_order, "initial_eval": self.initial_eval,
                 "last_stats": self.last_stats, "schedule": self.schedule.state_dict(), "elapsed_seconds": elapsed}
        return save_training_state(self.run_dir, self.step, {self.trainer_name: self.model}, self.optimizer, state, self.config.keep_checkpoints,
                                   self.device, grad_scaler=self.grad_scaler, world=self.world)

    @classmethod
    def resume(cls, run_dir: str | Path, overrides: dict | None = None, **kwargs) -> SupervisedTrainer:
        """The trainer of ``run_dir``'s newest checkpoint, ready to continue with ``train()``.

        The config is the checkpoint's (``overrides`` may change ``device`` only); rows and models
        given in Python to the first run must be given again through ``kwargs``.
        """
        arrays, meta, checkpoint_dir = load_training_state(run_dir, cls.trainer_name)
        config = cls.config_class.from_dict({**meta["config"], **resume_overrides(overrides, meta["config"], "epochs")},
                                             source=f"checkpoint {checkpoint_dir} config")
        trainer = cls(config, run_dir=checkpoint_dir.parent.parent, **kwargs)
        source = f"checkpoint {str(checkpoint_dir)!r}"
        restore_training_state(arrays, meta, source, {cls.trainer_name: trainer.model}, trainer.optimizer, trainer.device, trainer.grad_scaler,
                               trainer.world)
        try:
            trainer.step = int(meta["step"])
            set_python_random_state(trainer.order_rng, meta["order_rng"])
            trainer.epoch_order = meta["epoch_order"]
            trainer.initial_eval = meta["initial_eval"]
            trainer.last_stats = meta["last_stats"]
            trainer.schedule.load_state_dict(meta["schedule"])
            trainer.elapsed_before = float(meta["elapsed_seconds"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: checkpoint state is incomplete or malformed ({type(exc).__name__}: {exc})") from None
        if trainer.epoch_order is not None and len(trainer.epoch_order) != len(trainer.train_examples):
            raise ConfigError(f"{source}: the run had {len(trainer.epoch_order)} training rows, the data now has {len(trainer.train_examples)}; "
                              "resume with the same data")
        trainer.resumed_from = checkpoint_dir
        return trainer
