"""The Python API: PPO(env, config).learn(), .predict(), .save(), PPO.load()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ppokit.checkpoint import check_state_dict, list_checkpoints
from ppokit.config import write_run_config
from ppokit.core.metrics import explained_variance, explained_variance_sums
from ppokit.core.schedules import make_schedule
from ppokit.core.settings import UpdateSettings
from ppokit.distributed import current_world
from ppokit.errors import CheckpointError, ConfigError, NonFiniteError
from ppokit.gym.build import build_policy_and_engine, resolve_policy_and_engine, user_module
from ppokit.gym.callbacks import BestModelSaver, as_callbacks
from ppokit.gym.config import PPOConfig
from ppokit.gym.data_parallel import check_divisible_by_world, global_rollout_figures, merge_normalizers, normalizer_states
from ppokit.gym.envs.make import EnvSource, describe, make_env, make_vector_env, scores_whole_games
from ppokit.gym.envs.spaces import space_to_json
from ppokit.gym.persistence import load_agent, restore_training_state, save_agent_model, training_state, write_checkpoint
from ppokit.gym.predict import predict_actions
from ppokit.gym.presets import AUTO_PRESET, resolve_config, resolve_preset_name
from ppokit.gym.rollout import RolloutCollector
from ppokit.gym.samples import update_samples
from ppokit.gym.update_log import UpdateLog
from ppokit.threads import blas_thread_limit
from ppokit.training_loop import LoopPlan, run_training_loop

# a function of the metrics, an object with on_update(metrics), or a list of them; False stops training
Callback = Any
# the update's statistics, logged as losses/<name> and debug/<name>
LOSS_STATISTICS = ("policy_loss", "value_loss", "entropy", "old_approx_kl", "approx_kl", "clipfrac", "grad_norm")
DEBUG_STATISTICS = ("first_ratio_deviation", "stopped_early", "skipped_steps")


class PPO:
    """PPO on a Gymnasium env given by id (``"CartPole-v1"``) or by a factory returning a ``gym.Env``."""

    def __init__(self, env: EnvSource | None, config: PPOConfig | dict | None = None, *, preset: str | None = AUTO_PRESET, run_dir: str | Path | None = None,
                 progress_bar: bool | None = None, verbose: bool = True, spaces: tuple[gym.Space, gym.Space] | None = None, module=None):
        """``config``: a PPOConfig (used as given), or a dict of keys applied over ``preset``: by default
        the preset named like the env id when there is one (as `ppokit train` does); None starts from
        PPOConfig's defaults. ``spaces``: the (observation, action) spaces when they are known, so no
        env is built to read them (``env`` may then be None: a model that only predicts). ``module``: a
        torch.nn.Module of your own mapping a batch of observations to (distribution parameters,
        values), trained by the torch engine (``ppokit.gym.policies.torch_policy``).

        Every random stream is the agent's own, seeded from ``config.seed``; Python's and numpy's
        global random states are neither read nor changed."""
        self.env_source = env
        self.config = resolve_config(env, config, preset)
        self.preset_name = None if isinstance(config, PPOConfig) else resolve_preset_name(env, preset)
        if spaces is None:
            if env is None:
                raise ConfigError("PPO needs an environment (an id or a factory), or its spaces= to build a model without one")
            probe = make_env(env, self.config.env_kwargs)
            spaces = (probe.observation_space, probe.action_space)
            probe.close()
        observation_space, action_space = spaces
        config = self.config
        # data parallel under torchrun: this rank steps n_envs / world size of the envs (ppokit.distributed)
        self.world = current_world()
        check_divisible_by_world(config, self.world)
        # separate streams: actions, minibatch order, initial weights, predict() sampling
        action_seed, shuffle_seed, init_seed, predict_seed = np.random.SeedSequence(config.seed).spawn(4)
        if self.world.rank > 0:  # ranks act and shuffle with streams of their own; the weights start alike
            action_seed, shuffle_seed = np.random.SeedSequence(config.seed, spawn_key=(1000 + self.world.rank,)).spawn(2)
        self.rng = np.random.default_rng(action_seed)
        self.shuffle_rng = np.random.default_rng(shuffle_seed)
        self.predict_rng = np.random.default_rng(predict_seed)
        module = user_module(module, config)
        self.policy_kind, engine = resolve_policy_and_engine(config, observation_space, module is not None)
        self.policy, self.engine = build_policy_and_engine(self.policy_kind, engine, observation_space, action_space, config, init_seed, module, self.world)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress_bar = progress_bar
        self.verbose = verbose
        self.global_step = 0
        self.num_updates = 0
        # the current learn() call's updates: schedules run over them, a resumed run finishes them
        self.plan = {"start_update": 0, "updates": 0}
        self.consecutive_skipped_steps = 0
        self.best_eval_return: float | None = None
        self.recent_returns: list[float] = []
        self.resumed_from: Path | None = None
        self.checkpoint_world_size = self.world.size  # of the checkpoint this agent was loaded from
        self.pending_env_state: dict | None = None
        self.interrupted: str | None = None
        self.envs = None
        self.collector: RolloutCollector | None = None
        self.logger: UpdateLog | None = None
        self.last_metrics: dict[str, float] = {}

    @property
    def env_id(self) -> str | None:
        return self.env_source if isinstance(self.env_source, str) else None

    @property
    def observation_space(self) -> gym.Space:
        return self.policy.observation_space

    @property
    def action_space(self) -> gym.Space:
        return self.policy.action_space

    # ------------------------------------------------------------------ training
    def learn(self, total_steps: int | None = None, callback: Callback | None = None) -> PPO:
        """Train for ``total_steps`` more env steps (default: config.total_steps).

        A model loaded from an unfinished checkpoint continues its plan when ``total_steps`` is None,
        at the same schedule position. With a run dir, checkpoints are written every
        ``checkpoint_interval`` updates, at the end, when a callback stops training and on SIGINT or
        SIGTERM (then ``self.interrupted`` names the signal and learn() returns).
        """
        config = self.config
        if self.env_source is None:
            raise ConfigError("this model has no environment to learn from: pass env= to PPO.load()")
        self._check_resumable()
        plan_end = self.plan["start_update"] + self.plan["updates"]
        if total_steps is None and self.finished:
            if self.verbose and self.world.is_main:
                print(f"ppokit: this run finished its plan at update {self.num_updates} (step {self.global_step:,}); nothing to train. "
                      "Pass total_steps to train further.")
            return self
        if not (total_steps is None and self.resumed_from is not None and self.num_updates < plan_end):
            total_steps = config.total_steps if total_steps is None else int(total_steps)
            if total_steps < config.rollout_size:
                raise ConfigError(f"total_steps={total_steps} is smaller than one rollout (n_envs * n_steps = {config.rollout_size})")
            self.plan = {"start_update": self.num_updates, "updates": total_steps // config.rollout_size}
            plan_end = self.num_updates + self.plan["updates"]
        self._ensure_envs()
        callbacks = as_callbacks(callback)
        if config.eval_interval and self.run_dir is not None and self.world.is_main:
            callbacks.insert(0, BestModelSaver(self, self.run_dir / "best_model", config.eval_interval, config.eval_episodes))
        lr_at = make_schedule(config.lr_schedule, config.learning_rate)
        clip_at = make_schedule(config.clip_schedule, config.clip_range)
        self.logger = self._update_log(plan_end)
        self.logger.recent_returns.extend(self.recent_returns)
        self.interrupted = None
        plan = LoopPlan(step=lambda: self._one_update(lr_at, clip_at, callbacks), position=lambda: self.num_updates, end=plan_end,
                        checkpoint=self.save_checkpoint, checkpoint_interval=config.checkpoint_interval, message=self.logger.message,
                        stop_note=self._checkpoint_note, callbacks_may_stop=True)
        try:
            with blas_thread_limit(config.blas_threads):
                self.interrupted = run_training_loop(plan, self.world)
        finally:
            self.logger.close()
            self.resumed_from = None
        if self.run_dir is not None and not self.interrupted and self.world.is_main:
            self._write_run_summary()
        return self

    def _update_log(self, plan_end: int) -> UpdateLog:
        main = self.world.is_main  # the other ranks log nothing
        config = self.config
        return UpdateLog(self.run_dir if main else None, self.global_step + (plan_end - self.num_updates) * config.rollout_size,
                         start_step=self.global_step, tensorboard=config.tensorboard and self.run_dir is not None and main,
                         progress=self.progress_bar if main else False, console=self.verbose and main, log_interval=config.log_interval,
                         resume_after_update=self.num_updates if self.resumed_from is not None else None, last_update=plan_end)

    @property
    def finished(self) -> bool:
        """Whether this agent was loaded from a checkpoint taken at the end of its run's plan (nothing is left to train)."""
        return self.resumed_from is not None and self.plan["updates"] > 0 and self.num_updates >= self.plan["start_update"] + self.plan["updates"]

    def extend_to(self, total_steps: int) -> None:
        """Make the loaded run's plan end at ``total_steps`` env steps in all, so that learn() trains the steps beyond.

        The schedules are stretched over the longer plan: each update takes the learning rate and clip range it
        has in a run planned for ``total_steps`` from the plan's start (the same values under constant schedules)."""
        if total_steps <= self.global_step:
            raise ConfigError(f"total_steps={total_steps:,} is not beyond the {self.global_step:,} steps this run has trained; "
                              "give the new total, larger than that")
        more_updates = (total_steps - self.global_step) // self.config.rollout_size
        if more_updates < 1:
            raise ConfigError(f"total_steps={total_steps:,} adds less than one rollout (n_envs * n_steps = {self.config.rollout_size}) "
                              f"to the {self.global_step:,} steps trained")
        self.plan = {"start_update": self.plan["start_update"], "updates": self.num_updates - self.plan["start_update"] + more_updates}
        self.config.total_steps = total_steps

    def _check_resumable(self) -> None:
        """Continuing a checkpoint needs the world size that wrote it (each rank's envs and random streams depend on it);
        loading it to predict or evaluate does not."""
        if self.resumed_from is not None and self.checkpoint_world_size != self.world.size:
            raise CheckpointError(f"checkpoint {str(self.resumed_from)!r} was written by a run of {self.checkpoint_world_size} process(es); "
                                  f"resume it with the same number (torchrun --nproc_per_node, x --nnodes), not {self.world.size}")

    def _write_run_summary(self) -> None:
        """The learning-curve plot and the model card in the run dir (the CLI adds the evaluation)."""
        from ppokit.model_card import write_model_card
        from ppokit.plots import plot_runs

        write_run_config(self.run_dir, {"env_id": self.env_id, "preset": self.preset_name, **self.config.to_dict()}, keep_existing=True)
        plot_runs([self.run_dir], self.run_dir / "curves.png", title=f"PPO on {self.env_id or describe(self.env_source)}")
        write_model_card(self.run_dir)

    def _one_update(self, lr_at, clip_at, callbacks) -> bool:
        """Collect, update, log, run the callbacks; returns False when a callback asks to stop."""
        progress = (self.num_updates - self.plan["start_update"]) / self.plan["updates"]
        learning_rate, clip_range = lr_at(progress), clip_at(progress)
        self.engine.set_learning_rate(learning_rate)
        steps_before = self.collector.global_step
        stats, explained, episodes = self._train_on_rollout(self._update_settings(clip_range))
        if self.world.distributed:  # the steps and episodes of every rank
            explained, steps, episodes = global_rollout_figures(self.world, explained, self.collector.global_step - steps_before, episodes)
            self.global_step += steps
        else:
            self.global_step = self.collector.global_step
        self.num_updates += 1
        self._check_non_finite(stats)
        metrics = {"charts/learning_rate": learning_rate, "charts/clip_range": clip_range, "losses/explained_variance": explained}
        metrics |= {f"losses/{name}": stats[name] for name in LOSS_STATISTICS} | {f"debug/{name}": stats[name] for name in DEBUG_STATISTICS}
        self.last_metrics = self.logger.log_update(self.global_step, self.num_updates, metrics, episodes)
        self.recent_returns = list(self.logger.recent_returns)
        results = [cb.on_update(self.last_metrics) for cb in callbacks]
        return all(result is not False for result in results)

    def _check_non_finite(self, stats: dict[str, float]) -> None:
        """Skipped steps are tolerated; ``max_nonfinite_steps`` of them in a row stop the run."""
        skipped = int(stats["skipped_steps"])
        if skipped == 0:
            self.consecutive_skipped_steps = 0
            return
        if stats["num_minibatches"] > 0:  # some steps were applied: count the run at the end
            self.consecutive_skipped_steps = int(stats["trailing_skipped_steps"])
        else:
            self.consecutive_skipped_steps += skipped
        self.logger.message(f"warning: update {self.num_updates}: {skipped} gradient step(s) skipped, non-finite loss or gradient "
                            f"({self.consecutive_skipped_steps} in a row; the limit is max_nonfinite_steps={self.config.max_nonfinite_steps})")
        if self.consecutive_skipped_steps >= self.config.max_nonfinite_steps:
            raise NonFiniteError(
                f"{self.consecutive_skipped_steps} gradient steps in a row had a non-finite loss or gradient "
                f"(max_nonfinite_steps={self.config.max_nonfinite_steps}); training stopped at update {self.num_updates}" + self._checkpoint_note()
            )

    def _checkpoint_note(self) -> str:
        found = list_checkpoints(self.run_dir) if self.run_dir is not None else []
        return f"; last checkpoint: {found[-1]}" if found else "; no checkpoint was written (no run dir)"

    def save_checkpoint(self) -> Path | None:
        """Write a full training checkpoint into the run dir (None without a run dir; ``ppokit.gym.persistence``)."""
        return write_checkpoint(self)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly, at an update boundary: ``model`` (weights and
        normalizer statistics) and ``optimizer`` (the engine's state) as numpy arrays, ``training``
        (counters, schedule position, recent returns and every random stream of the agent) as JSON values."""
        return {"model": self.policy.state_dict(), "optimizer": self.engine.state_dict(), "training": training_state(self)}

    def load_state_dict(self, state: dict[str, Any], source: str = "state dict") -> None:
        """Put back what ``state_dict()`` returned (into an agent built with the same config and spaces)."""
        check_state_dict(self.policy.state_dict(), state["model"], source)
        if self.engine.name == "numpy":  # (a fresh torch optimizer has no per-parameter state to compare with)
            check_state_dict(self.engine.state_dict(), state["optimizer"], source)
        self.policy.load_state_dict(state["model"])
        self.engine.load_state_dict(state["optimizer"])
        restore_training_state(self, state["training"], source)

    def _train_on_rollout(self, settings: UpdateSettings) -> tuple[dict[str, float], float | list[float], list[tuple[float, int]]]:
        """Collect a rollout, compute its advantages and run the update.

        Returns the update's statistics, the explained variance (data parallel: this rank's sums of it) and the
        episodes that finished."""
        before = normalizer_states(self.policy) if self.world.distributed else None
        rollout, last_value, episodes = self.collector.collect()
        if before is not None:
            merge_normalizers(self.policy, before, self.world)
        samples, order = update_samples(rollout, last_value, self.engine, self.config, self.shuffle_rng, settings.minibatch_size,
                                        self.policy.recurrent, keep_masked_steps=self.world.distributed)
        stats = self.engine.update(samples, settings, order)
        explained = explained_variance_sums if self.world.distributed else explained_variance
        return stats, explained(samples["values"], samples["returns"], samples.get("mask")), episodes

    def _update_settings(self, clip_range: float) -> UpdateSettings:
        # data parallel: each rank takes its share of every minibatch
        return self.config.update_settings(clip_range=clip_range, minibatch_size=self.config.minibatch_size // self.world.size)

    def _ensure_envs(self) -> None:
        if self.envs is not None:
            return
        # rank r steps the envs r * n + 0..n-1 of the global set (n per rank): seeded as a single process seeds them
        n_envs = self.config.n_envs // self.world.size
        seed_offset = self.world.rank * n_envs
        self.envs = make_vector_env(self.env_source, n_envs, self.config.vec_env, self.config.env_kwargs,
                                    self.config.env_backend, self.config.seed + seed_offset)
        self._check_spaces_match(self.envs.single_observation_space, self.envs.single_action_space)
        self.collector = RolloutCollector(self.envs, self.policy, self.config.n_steps, describe(self.env_source), self.rng,
                                          bootstrap_truncated=self.config.bootstrap_truncated, whole_games=scores_whole_games(self.envs),
                                          action_masks=self.config.action_masks)
        self.collector.global_step = self.global_step
        if self.pending_env_state is None:
            self.collector.reset(seed=self.config.seed + seed_offset)
        else:  # resumed: episodes restart from a recorded seed
            self.collector.reset(seed=self.pending_env_state["seed"] + seed_offset)
            if self.pending_env_state["action_space"] is not None:
                self.envs.action_space.np_random.bit_generator.state = self.pending_env_state["action_space"]
            self.pending_env_state = None

    def _check_spaces_match(self, observation_space, action_space) -> None:
        if space_to_json(observation_space) != space_to_json(self.observation_space) or space_to_json(action_space) != space_to_json(self.action_space):
            raise ConfigError(
                f"environment {describe(self.env_source)!r} has spaces {observation_space} / {action_space}, "
                f"but the model was built for {self.observation_space} / {self.action_space}"
            )

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()
            self.envs = None
            self.collector = None

    # ------------------------------------------------------------------ inference
    def predict(self, observation, state: np.ndarray | None = None, episode_start=None, deterministic: bool = False,
                action_mask=None):
        """Actions for one observation or a batch of them, in the env's format (Box actions clipped).

        ``observation`` as the env returns it (a Dict observation as its dict, of one or of a batch).
        ``action_mask``: the valid actions (true = valid; one entry per action, or per choice of each
        MultiDiscrete dimension; [logits] or [batch, logits]); by default the observation's
        ``action_mask`` key when it has one. Invalid actions are never chosen.

        A recurrent policy (``policy: lstm``) returns ``(actions, state)``, as Stable-Baselines3's
        RecurrentPPO does: pass ``state`` back on the next call (None: every copy at an episode's start)
        and ``episode_start`` (a bool per copy) where an episode has just begun.
        """
        return predict_actions(self.policy, self.predict_rng, self.config.action_masks, observation, state, episode_start, deterministic,
                               action_mask)

    # ------------------------------------------------------------------ saving
    def save(self, directory: str | Path) -> Path:
        """Write model.safetensors (weights and normalizer statistics) and model.json (config and spaces).

        Data parallel, rank 0 alone writes (every rank holds the same model); the others return the path."""
        return save_agent_model(self, directory)

    @classmethod
    def load(cls, directory: str | Path, env: EnvSource | None = None, *, run_dir: str | Path | None = None, progress_bar: bool | None = None,
             verbose: bool = True, module=None, features_extractor: str | None = None) -> PPO:
        """Rebuild a saved model or a training checkpoint.

        ``directory`` is a model folder (model.json: weights and normalizer statistics), a checkpoint
        folder, or a run folder with checkpoints/ (its newest checkpoint: optimizer, counters,
        schedule position and random states too, so learn() continues the run and, by default,
        its logs). ``env`` defaults to the saved env id (needed only to keep learning). A model trained
        with a module of your own needs ``module``: a fresh instance of that module, to load the weights into, or the
        'package.module:Factory' it was trained with. Loading imports no code the files name: a model whose
        features extractor is a 'package.module:Class' spec (not registered in this process) needs the same
        ``features_extractor=`` to import it.
        """
        return load_agent(cls, directory, env, run_dir=run_dir, progress_bar=progress_bar, verbose=verbose, module=module,
                          features_extractor=features_extractor)
