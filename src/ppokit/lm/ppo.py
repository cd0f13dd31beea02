"""PPO and its critic-free family (GRPO, Dr. GRPO, RLOO, REINFORCE++) for causal language models, on ppokit.core.

One update reads top to bottom:
1. collect: sample ``samples_per_prompt`` responses to each prompt of a batch, cut them at EOS and score
   each finished text once (reward model and/or functions); with ``dynamic_sampling`` groups whose rewards
   are all equal are replaced by groups of new prompts;
2. score: the policy's old log-probs (in the update's first-epoch micro-batches, so the first ratio is
   exactly 1; skipped when one epoch takes them from its own first pass), the reference's and the values;
3. advantages: scores (minus the missing-EOS penalty, normalized) and the per-token KL penalty make the
   per-token rewards, and the estimator of ``advantage_estimator`` (``ppokit.core.estimators``) turns them
   into advantages;
4. update: the core's ``ppo_update`` (clipped surrogate, value loss where there is a value model, the KL term
   with the KL in the loss), then the log: progress.csv, TensorBoard, held-out evaluation, completions.

Data parallel under torchrun (``ppokit.lm.parallel``): every rank draws the same global batch of prompts
and rolls out its slice of whole groups; score normalization, whitening, the KL controller's mean KL and
the logged statistics are over all ranks; the update runs through DDP (or FSDP2 with ``parallel: fsdp``),
and rank 0 alone writes. Everything lives on ``config.device``; log-probs, values and losses are float32.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import torch

from ppokit.core.batch import micro_batch_slices, minibatch_indices
from ppokit.core.estimators import AdvantageInputs, estimate_advantages
from ppokit.core.losses import kl_k1, kl_k3, masked_whiten_over_ranks
from ppokit.core.schedules import AdaptiveKLController, FixedKLController
from ppokit.core.update import ppo_update
from ppokit.distributed import check_divisible, current_world
from ppokit.errors import CheckpointError, ConfigError
from ppokit.lm.checkpoints import (
    load_training_state,
    rank_array,
    restore_training_state,
    resume_overrides,
    save_training_state,
)
from ppokit.lm.completions import completion_rows, drop_completions_after, write_completions
from ppokit.lm.config import LMPPOConfig, apply_run_settings
from ppokit.lm.device import StageTimer, placed, rank_device, resolve_device, write_run_info
from ppokit.lm.dynamic_sampling import keep_informative_groups
from ppokit.lm.evaluation import evaluate_policy
from ppokit.lm.generation import GenerationSettings, unsampled_token
from ppokit.lm.models import context_length, load_causal_lm, load_tokenizer, save_pretrained
from ppokit.lm.parallel import rank_seed, rank_share, reshard, save_sharded
from ppokit.lm.ppo_log import COLUMNS, held_out_row, update_row
from ppokit.lm.ppo_models import PPOModels
from ppokit.lm.precision import Precision
from ppokit.lm.prompt_pool import PromptPool, encode_prompts, located_prompts
from ppokit.lm.rewards import ResponseBatch
from ppokit.lm.rollout import Responses, Rollout, pad_responses, sample
from ppokit.lm.score_shaping import ScoreNormalizer, penalized, per_token_rewards
from ppokit.lm.scoring import in_chunks, logprobs_and_entropy, pad_columns, response_logits, response_logprobs, trim_padding
from ppokit.run_logging import MetricsLogger
from ppokit.training_loop import LoopPlan, run_training_loop

KL_ESTIMATORS = {"k1": kl_k1, "k3": kl_k3}
def check_batch_layout(config: LMPPOConfig, world) -> None:
    """Data parallel: batch_size and minibatch_size split over the processes, each one's share in whole groups."""
    check_divisible({"batch_size": config.batch_size, "minibatch_size": config.minibatch_size}, world)
    if (config.batch_size // world.size) % config.samples_per_prompt:
        raise ConfigError(f"batch_size={config.batch_size} over {world.size} processes gives each {config.batch_size // world.size} responses, "
                          f"not whole groups of samples_per_prompt={config.samples_per_prompt}; a group stays in one process "
                          f"(make batch_size a multiple of {world.size * config.samples_per_prompt})")


class LMPPOTrainer:
    """PPO (or a critic-free estimator) of ``policy`` against ``reward``. Everything not given is loaded from the paths in ``config``.

    ``reward``: a source with ``score(ResponseBatch)`` (RewardModelReward, FunctionReward, SumReward) or
    a plain function (prompt, response) -> float. ``prompts``: strings or message lists (chat).
    ``eval_prompts``: held-out prompts (default: config.eval_prompts). ``gold_reward``: an optional function
    that is only logged (env/gold), for demos where the true reward is known. Resume with ``LMPPOTrainer.resume(run_dir)``.
    """

    def __init__(self, config: LMPPOConfig, run_dir: str | Path | None = None, policy=None, tokenizer=None, reference=None,
                 value_model=None, reward=None, prompts: list | None = None, gold_reward=None, eval_prompts: list | None = None,
                 progress: bool | None = None, verbose: bool = True):
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        apply_run_settings(config)
        device = resolve_device(config.device)
        self.world = current_world(device.type)  # data parallel under torchrun (ppokit.distributed)
        self.device = rank_device(config.device, device, self.world)
        self.world.check_same("the config", config.to_dict())
        check_batch_layout(config, self.world)
        self.sharded = self.world.distributed and config.parallel == "fsdp"
        self.precision = Precision.resolve(config.precision, self.device)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.policy)
        policy = policy if policy is not None else load_causal_lm(config.policy, self.tokenizer, self.precision.weights_dtype)
        self.models = PPOModels(config, self.tokenizer, policy, self.device, self.precision, self.precision.inference_dtype(config.inference_dtype),
                                self.world, self.sharded, reference, value_model, reward, self.forward_batch_size)
        self.prompt_pool = PromptPool(*self._load_prompts(prompts, config.prompts, "prompt"), seed=config.seed)  # the order: alike on every rank
        self.eval_prompts, self.eval_prompt_ids = self._load_prompts(eval_prompts, config.eval_prompts, "held-out prompt") \
            if eval_prompts is not None or config.eval_prompts else ([], [])
        self.gold_reward = gold_reward
        self.kl_estimator = KL_ESTIMATORS[config.kl_estimator]
        self.kl_controller = (AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon) if config.adaptive_kl
                              else FixedKLController(config.kl_coef))
        self.normalize_scores = ScoreNormalizer(config.resolved_score_normalization, config.score_clip, self.device, self.world)
        self.generation = GenerationSettings(config.max_new_tokens, config.temperature, config.top_k, config.top_p)
        self.parameters = self.models.trainable_parameters()
        # fused: one kernel for all parameters; with small models the per-tensor optimizer overhead is ~5% of an update
        self.optimizer = torch.optim.Adam(self.parameters, lr=config.learning_rate, eps=config.adam_eps, fused=self.device.type in ("cpu", "cuda"))
        self.grad_scaler = self.precision.grad_scaler()
        # data parallel: each rank takes its share of every minibatch
        self.settings = config.update_settings(grad_accum_steps=config.grad_accum_steps, minibatch_size=config.minibatch_size // self.world.size)
        self.minibatch_generator = torch.Generator().manual_seed(rank_seed(config.seed, self.world))
        self.first_epoch_order: torch.Tensor | None = None  # drawn when the old log-probs are scored, used by the update
        if self.world.rank > 0:  # the models are built (alike on every rank): sample with a stream of this rank's own
            torch.manual_seed(rank_seed(config.seed, self.world))
        self.num_updates = self.episodes = 0
        self.tokens = 0.0  # response tokens generated over the run
        self.elapsed_before = 0.0  # seconds trained before a resume
        self.resumed_from: Path | None = None
        self.interrupted: str | None = None
        self.history: list[dict[str, float]] = []
        self.timer = StageTimer(self.device, ("generate", "score", "update"))  # the seconds of each stage of the update under way
        self.progress, self.verbose = progress, verbose

    # the models, by the names the tests and users reach them with
    policy = property(lambda self: self.models.policy)
    reference = property(lambda self: self.models.reference)
    value_model = property(lambda self: self.models.value_model)
    reward = property(lambda self: self.models.reward)
    # the training prompts and their ids
    prompts = property(lambda self: self.prompt_pool.prompts)
    prompt_ids = property(lambda self: self.prompt_pool.prompt_ids)
    # the running moments of score_normalization: running
    score_moments = property(lambda self: self.normalize_scores.moments)

    @property
    def stats_dtype(self) -> torch.dtype:
        """What logged sums are added up in: float64, but on MPS, which has none, float32."""
        return torch.float32 if self.device.type == "mps" else torch.float64

    @property
    def forward_batch_size(self) -> int:
        return self.config.forward_batch_size or self.config.batch_size

    @property
    def scores_old_logprobs(self) -> bool:
        """Whether the rollout scores the policy's log-probs: needed for a KL in the reward, and as the old log-probs
        of every epoch after the first. One epoch without them takes its old log-probs from its own forward pass."""
        return self.config.n_epochs > 1 or (self.models.uses_reference and self.config.kl_in_reward)

    def _load_prompts(self, given: list | None, path: str | None, kind: str) -> tuple[list, list[list[int]]]:
        located = located_prompts(given, path, kind)
        return [prompt for _, prompt in located], self._encode_prompts(located)

    def _encode_prompts(self, located: list[tuple[str, str | list]]) -> list[list[int]]:
        limit = context_length(self.policy)
        room = None if limit is None else limit - self.config.max_new_tokens
        return encode_prompts(self.tokenizer, located, room, self.config.truncate_prompts, self.config.max_new_tokens)

    def _next_prompts(self) -> list[int]:
        """The next batch of prompt indices: shuffled passes over the prompts, one after another."""
        return self.prompt_pool.next_batch(self.config.prompts_per_batch)

    # ------------------------------------------------------------------ 1. collect
    def _sample_group_rows(self, prompt_indices: list[int]) -> Rollout:
        """Sample this rank's rows of a global batch of prompts (each prompt samples_per_prompt times) and score the texts."""
        rows = rank_share([i for i in prompt_indices for _ in range(self.config.samples_per_prompt)], self.world)
        with self.timer.timed("generate"):
            responses = sample(self.policy, self.tokenizer, rows, [self.prompts[i] for i in rows], [self.prompt_ids[i] for i in rows],
                               self.generation, self.precision, self.device, self.config.generation_batch_size, synced=self.sharded)
        rollout = self._padded(responses)
        with self.timer.timed("score"):
            responses.raw_scores = self.reward_scores(rollout)
        return rollout

    @property
    def unsampled_token(self) -> int | None:
        """The pad token, which generation never samples (probability 0 when scoring), unless it is the EOS."""
        return unsampled_token(self.tokenizer.pad_token_id, self.tokenizer.eos_token_id)

    def _padded(self, responses: Responses) -> Rollout:
        group_ids = torch.arange(len(responses), device=self.device) // self.config.samples_per_prompt
        return pad_responses(responses, group_ids, self.tokenizer.pad_token_id, self.device)

    def reward_scores(self, rollout: Rollout) -> torch.Tensor:
        """The reward of each finished text (reward models are placed on the device while they score)."""
        batch = ResponseBatch(rollout.prompts, rollout.texts, rollout.sequence_ids, rollout.sequence_mask, self.tokenizer)
        with ExitStack() as stack:
            for model in self.reward.models:
                stack.enter_context(placed(model, self.device, self.config.offload_reference))
            with self.precision.autocast():
                return self.reward.score(batch).float().to(self.device)  # (a source of a user's own may answer on the CPU)

    def collect(self, prompt_indices: list[int]) -> Rollout:
        """This rank's rows of a batch: the global ``prompt_indices``, with dynamic sampling the groups that carry signal."""
        rollout = self._sample_group_rows(prompt_indices)
        if not self.config.dynamic_sampling:
            return rollout
        config = self.config
        responses, extra = keep_informative_groups(rollout.responses, lambda: self._sample_group_rows(self._next_prompts()).responses,
                                                   config.samples_per_prompt, config.dynamic_sampling_max_rounds, config.missing_eos_penalty, self.world)
        rollout = self._padded(responses)
        rollout.extra = extra
        return rollout

    # ------------------------------------------------------------------ 2. score
    def minibatch_order(self, count: int) -> torch.Tensor:
        """A permutation of the rows for one epoch, from the update's own minibatch generator. With groups, whole groups are
        shuffled and their rows stay together: a micro-batch then holds whole groups, whose prompt runs once."""
        n = self.config.samples_per_prompt
        if n == 1:  # (drawn on the CPU, where the generator is, whatever the device)
            return torch.randperm(count, generator=self.minibatch_generator, device="cpu")
        groups = torch.randperm(count // n, generator=self.minibatch_generator, device="cpu")
        return (groups.unsqueeze(1) * n + torch.arange(n, device="cpu")).flatten()

    def plan_first_epoch(self, count: int) -> list[torch.Tensor]:
        """The micro-batches of the next update's first epoch, which the old log-probs are scored in (the update keeps
        the permutation it drew here for that epoch: its first ratio is then exactly 1)."""
        self.first_epoch_order = self.minibatch_order(count)
        return [minibatch[part].to(self.device) for minibatch in minibatch_indices(count, self.settings.minibatch_size, permutation=self.first_epoch_order)
                for part in micro_batch_slices(len(minibatch), self.config.grad_accum_steps)]

    @torch.no_grad()
    def score(self, rollout: Rollout, layout: list[torch.Tensor]) -> None:
        """Old log-probs of the policy (in ``layout``, the update's first-epoch micro-batches: its first ratio is then exactly 1,
        as a row's result may depend on the shape of the batch it is computed in), the reference's, and the values."""
        if self.scores_old_logprobs:
            self.models.training_mode(True)  # the mode of the update, which must repeat this computation
            try:
                rollout.logprobs = torch.empty_like(rollout.mask)
                for rows in layout:
                    rollout.logprobs[rows] = response_logprobs(self.policy, rollout, rows, self.precision, self.config.temperature,
                                                               self.models.share_prompts, self.unsampled_token)
            finally:
                self.models.training_mode(False)
        if self.models.uses_reference:
            rollout.ref_logprobs = self.reference_logprobs(rollout)
        if self.models.value_model is not None:
            rollout.values = in_chunks(self._values_of(rollout), len(rollout), self.forward_batch_size, self.device)

    def _values_of(self, rollout: Rollout):
        def values(rows: torch.Tensor) -> torch.Tensor:
            ids, mask, _, width = trim_padding(rollout.sequence_ids[rows], rollout.sequence_mask[rows], rollout.response_ids[rows], rollout.prompt_width)
            return pad_columns(self.models.value_scores(ids, mask, width), rollout.response_ids.shape[1])

        return values

    def reference_logprobs(self, rollout: Rollout) -> torch.Tensor:
        """Log-probs of the sampled responses under the reference (with LoRA: the policy with its adapter off)."""
        def logprobs(model):
            return in_chunks(lambda rows: response_logprobs(model, rollout, rows, self.precision, self.config.temperature, self.models.share_prompts,
                                                            self.unsampled_token), len(rollout), self.forward_batch_size, self.device)

        if self.reference is None:
            with self.policy.disable_adapter():
                return logprobs(self.policy)
        with placed(self.reference, self.device, self.config.offload_reference):
            return logprobs(self.reference)

    # ------------------------------------------------------------------ 3. advantages
    def advantages(self, rollout: Rollout) -> None:
        """Scores, per-token KL and rewards, then the configured estimator's advantages and returns."""
        config, mask = self.config, rollout.mask
        rollout.scores = self.normalize_scores(penalized(rollout.responses.raw_scores, rollout.has_eos, config.missing_eos_penalty))
        if rollout.logprobs is not None and rollout.ref_logprobs is not None:
            rollout.kl = self.kl_estimator(rollout.logprobs, rollout.ref_logprobs) * mask
        in_reward = rollout.kl if config.kl_in_reward else None
        rollout.token_rewards = per_token_rewards(rollout.scores, in_reward, mask, self.kl_controller.value)
        inputs = AdvantageInputs(rollout.token_rewards, rollout.scores, mask, rollout.group_ids, rollout.values, config.gamma, config.gae_lambda,
                                 self.world)
        rollout.advantages, rollout.returns = estimate_advantages(config.advantage_estimator, inputs)
        if config.resolved_whiten_advantages:  # over every rank's response tokens
            rollout.advantages = masked_whiten_over_ranks(rollout.advantages, mask, self.world) * mask
        reshard(self.policy, self.models.value_scores, self.reference)  # (FSDP: after forward passes without a backward)

    @torch.no_grad()
    def rollout(self, prompt_indices: list[int]) -> Rollout:
        """Collect, score and compute advantages for one batch of prompts (global prompt indices; this rank takes its slice)."""
        rollout = self.collect(prompt_indices)
        self.score(rollout, self.plan_first_epoch(len(rollout)))
        self.advantages(rollout)
        return rollout

    # ------------------------------------------------------------------ 4. update
    def update(self, rollout: Rollout) -> dict[str, float]:
        """One ppokit.core PPO update on a rollout's samples (sequences are the sample axis)."""
        full_width = rollout.response_ids.shape[1]

        def evaluate(minibatch):
            ids, mask, responses, width = trim_padding(minibatch["sequence_ids"], minibatch["sequence_mask"], minibatch["responses"],
                                                       rollout.prompt_width)
            if self.sharded:
                logits = response_logits(self.models.policy_update, ids, mask, width, self.precision)
            else:
                logits = self.models.policy_update(ids, mask, width)
            logprob, entropy = logprobs_and_entropy(logits, responses, self.config.temperature, bool(self.config.ent_coef), self.unsampled_token)
            values = None if self.models.value_update is None else self.models.value_update(ids, mask, width)
            return tuple(None if x is None else pad_columns(x, full_width) for x in (logprob, entropy, values))

        first_epoch, self.first_epoch_order = self.first_epoch_order, None
        if first_epoch is None or len(first_epoch) != len(rollout):  # a rollout scored without plan_first_epoch
            first_epoch = self.minibatch_order(len(rollout))
        self.models.training_mode(True)
        try:
            return ppo_update(evaluate, self.optimizer, self.parameters, rollout.samples(kl_in_loss=bool(self.settings.kl_loss_coef)), self.settings,
                              order=lambda epoch: first_epoch if epoch == 0 else self.minibatch_order(len(rollout)), grad_scaler=self.grad_scaler,
                              world=self.world,
                              ddp_modules=self.models.ddp_modules)
        finally:
            self.models.training_mode(False)
            reshard(self.policy, self.models.value_scores)  # (FSDP: a target-KL stop may leave a forward without its backward)

    # ------------------------------------------------------------------ the loop
    @property
    def total_updates(self) -> int:
        return self.config.total_episodes // self.config.batch_size

    @property
    def finished(self) -> bool:
        """Whether a resumed run has already made every update of total_episodes."""
        return self.resumed_from is not None and self.num_updates >= self.total_updates

    def train(self) -> dict[str, float]:
        """Train until total_episodes (continuing a resumed run). After SIGINT/SIGTERM the run stops at
        the next update boundary with a checkpoint and ``interrupted`` names the signal."""
        if self.finished:  # resumed from the checkpoint at its end: the run's outputs stay as they are
            return self._finished_result()
        logger = self._logger()
        started = time.perf_counter()
        elapsed = lambda: self.elapsed_before + time.perf_counter() - started  # noqa: E731

        def evaluate_first() -> None:
            if self.config.eval_before_training and self.num_updates == 0 and self.eval_prompts:
                logger.log(0, self.episodes, self._held_out_row(), ["eval/score"])

        note = f"; checkpoint written, continue with: ppokit lm ppo --resume {self.run_dir}" if self.run_dir else ""
        plan = LoopPlan(step=lambda: self._one_update(logger, elapsed), position=lambda: self.num_updates, end=self.total_updates,
                        checkpoint=(lambda: self.save_checkpoint(elapsed())) if self.run_dir is not None else None,
                        checkpoint_interval=self.config.checkpoint_interval, message=logger.message, stop_note=lambda: note,
                        before=evaluate_first)
        try:
            self.interrupted = run_training_loop(plan, self.world)
        finally:
            logger.close()
            self.history = logger.rows
        if self.run_dir is not None and not self.interrupted:
            self.save(self.run_dir / "policy")
        return {"updates": self.num_updates, "episodes": self.episodes, "seconds": elapsed(), "interrupted": self.interrupted,
                "final_score": next((row["env/score"] for row in reversed(self.history) if "env/score" in row), float("nan"))}

    def _one_update(self, logger: MetricsLogger, elapsed) -> bool:
        """Collect, score, advantages, update; then log (with a held-out evaluation when one is due) and keep completions."""
        self.timer.reset()
        with torch.no_grad():
            rollout = self.collect(self._next_prompts())
            with self.timer.timed("score"):
                self.score(rollout, self.plan_first_epoch(len(rollout)))
                self.advantages(rollout)
        with self.timer.timed("update"):
            stats = self.update(rollout)
        timings = self.timer.seconds()
        self.num_updates += 1
        self.episodes += self.config.batch_size
        row, tokens, mean_kl = update_row(self, rollout, stats, elapsed())
        self.tokens += tokens
        if mean_kl is not None:
            self.kl_controller.update(mean_kl, self.config.batch_size)
        if self.eval_prompts and (self.num_updates == self.total_updates or
                                  (self.config.eval_interval and self.num_updates % self.config.eval_interval == 0)):
            row |= self._held_out_row()
        logger.log(self.num_updates, self.episodes, row | timings, ["env/score", "env/gold", "env/kl", "losses/approx_kl", "eval/score"])
        if self.config.log_completions and self.world.is_main:
            write_completions(self.run_dir, logger, completion_rows(rollout, self.num_updates, self.config.log_completions), self.num_updates)
        return True

    def _logger(self) -> MetricsLogger:
        main = self.world.is_main  # data parallel: the other ranks write and show nothing
        if self.run_dir is not None and main:
            write_run_info(self.run_dir, "lm_ppo", self.device, self.precision.name)
            if self.resumed_from is not None:
                drop_completions_after(self.run_dir, self.num_updates)
        config = self.config
        return MetricsLogger(self.run_dir if main else None, COLUMNS, total=self.total_updates * config.batch_size, unit="episode",
                             tensorboard=config.tensorboard, progress=self.progress if main else False, console=self.verbose and main,
                             log_interval=config.log_interval, resume_after_step=self.num_updates if self.resumed_from is not None else None,
                             initial=self.episodes, last_step=self.total_updates)

    def _finished_result(self) -> dict:
        if self.world.is_main and self.verbose:
            print(f"ppokit: this run has finished ({self.num_updates} updates, {self.episodes} episodes); nothing to train. "
                  "To train further, resume with total_episodes=N (the new total)")
        return {"updates": self.num_updates, "episodes": self.episodes, "seconds": 0.0, "interrupted": None, "finished": True,
                "final_score": float("nan")}

    # ------------------------------------------------------------------ evaluation and saving
    def _held_out_row(self) -> dict[str, float]:
        return held_out_row(self.evaluate(), self.config.eval_samples)

    def evaluate(self, prompts: list | None = None, samples: int | None = None, gold_reward=None, seed: int = 12345,
                 pass_threshold: float | None = None) -> dict:
        """Greedy and ``samples`` (default eval_samples) sampled responses to ``prompts`` (default: the held-out prompts), scored
        with the reward: score, score_mean, pass@k, kl, eos_fraction, response_length, gold and gold_mean (``ppokit.lm.evaluation``).
        The random state of training is left as it was."""
        if prompts is None:
            prompts, prompt_ids = self.eval_prompts, self.eval_prompt_ids
        else:
            prompt_ids = self._encode_prompts([(f"prompt {i + 1}", p) for i, p in enumerate(prompts)])
        if not prompts:
            raise ConfigError("no held-out prompts: set eval_prompts (a JSONL file) or pass prompts to evaluate()")
        return evaluate_policy(self, prompts, prompt_ids, self.config.eval_samples if samples is None else samples,
                               self.config.eval_pass_threshold if pass_threshold is None else pass_threshold, seed, gold_reward)

    def trained_policy(self):
        """The policy as a plain causal LM (a LoRA adapter merged into a copy of the base)."""
        return self.models.trained_policy()

    def save(self, directory: str | Path) -> Path:
        """The policy (LoRA merged) and tokenizer, loadable with load_causal_lm; the value model (if any) beside it.

        Data parallel, every rank calls this (FSDP gathers the shards) and rank 0 alone writes."""
        directory = Path(directory)
        value_model = self.models.value_model
        if self.sharded:
            save_sharded(self.policy, self.tokenizer, directory, self.world)
            if value_model is not None:
                save_sharded(value_model, self.tokenizer, directory / "value_model", self.world)
        elif self.world.is_main:
            save_pretrained(self.trained_policy(), self.tokenizer, directory)
            if value_model is not None:
                save_pretrained(value_model, self.tokenizer, directory / "value_model")
        return directory

    def save_checkpoint(self, elapsed: float = 0.0) -> Path | None:
        """Every rank calls this; rank 0 writes (with every rank's random streams) and returns the folder, the others None."""
        state = {"trainer": "lm_ppo", "config": self.config.to_dict(), "device": str(self.device), "precision": self.precision.name,
                 "num_updates": self.num_updates, "episodes": self.episodes, "tokens": self.tokens,
                 "elapsed_seconds": elapsed, "kl_controller": self.kl_controller.state_dict(),
                 **self.prompt_pool.state_dict()}
        arrays = {f"score_moments.{name}": value for name, value in self.score_moments.state_dict().items()}
        return save_training_state(self.run_dir, self.num_updates, self.models.trained, self.optimizer, state,
                                   self.config.keep_checkpoints, self.device, arrays, self.grad_scaler, self.world,
                                   rank_arrays={"rng.minibatch_order": self.minibatch_generator.get_state()})

    @classmethod
    def resume(cls, run_dir: str | Path, overrides: dict | None = None, **kwargs) -> LMPPOTrainer:
        """The trainer of ``run_dir``'s newest checkpoint, ready to continue with ``train()``.

        The config is the checkpoint's (``overrides`` may change ``device``, and ``total_episodes`` to train further);
        models, rewards and prompts given in Python to the first run must be given again through ``kwargs``.
        """
        arrays, meta, checkpoint_dir = load_training_state(run_dir, "lm_ppo")
        config = LMPPOConfig.from_dict({**meta["config"], **resume_overrides(overrides, meta["config"], "total_episodes")},
                                       source=f"checkpoint {checkpoint_dir} config")
        trainer = cls(config, run_dir=checkpoint_dir.parent.parent, **kwargs)
        source = f"checkpoint {str(checkpoint_dir)!r}"
        restore_training_state(arrays, meta, source, trainer.models.trained, trainer.optimizer, trainer.device, trainer.grad_scaler, trainer.world)
        try:
            trainer.num_updates, trainer.episodes = int(meta["num_updates"]), int(meta["episodes"])
            trainer.tokens, trainer.elapsed_before = float(meta["tokens"]), float(meta["elapsed_seconds"])
            trainer.kl_controller.load_state_dict(meta["kl_controller"])
            trainer.prompt_pool.load_state_dict(meta)
            trainer.score_moments.load_state_dict({name: arrays[f"score_moments.{name}"] for name in ("mean", "var", "count")})
            trainer.minibatch_generator.set_state(rank_array(arrays, "rng.minibatch_order", trainer.world))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: checkpoint state is incomplete or malformed ({type(exc).__name__}: {exc})") from None
        trainer.prompt_pool.check_queue(source)
        trainer.resumed_from = checkpoint_dir
        return trainer

