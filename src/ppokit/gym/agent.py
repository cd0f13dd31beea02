"""The Python API: PPO(env, config).learn(), .predict(), .save(), PPO.load()."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ppokit.checkpoint import CHECKPOINT_META_FILE, check_state_dict, list_checkpoints, load_checkpoint, load_model, save_checkpoint, save_model
from ppokit.config import write_run_config
from ppokit.core.advantages import gae, next_values_from
from ppokit.core.metrics import explained_variance, explained_variance_from_sums, explained_variance_sums
from ppokit.core.running_stats import merge_over_ranks
from ppokit.core.schedules import make_schedule
from ppokit.core.settings import UpdateSettings
from ppokit.distributed import check_divisible, current_world
from ppokit.errors import CheckpointError, ConfigError, InputError, NonFiniteError
from ppokit.gym.build import build_policy_and_engine, resolve_policy_and_engine, user_module
from ppokit.gym.callbacks import BestModelSaver, as_callbacks
from ppokit.gym.config import PPOConfig
from ppokit.gym.envs.action_masks import first_without_valid_action, logit_bounds
from ppokit.gym.envs.make import EnvSource, describe, make_env, make_vector_env, scores_whole_games
from ppokit.gym.envs.spaces import ACTION_MASK_KEY, space_from_json, space_to_json
from ppokit.gym.policies.protocol import POLICY_INPUTS
from ppokit.gym.presets import load_preset, preset_for_env
from ppokit.gym.rollout import RolloutCollector, sequence_order
from ppokit.gym.update_log import UpdateLog
from ppokit.threads import blas_thread_limit
from ppokit.training_loop import LoopPlan, run_training_loop

# a function of the metrics, an object with on_update(metrics), or a list of them; False stops training
Callback = Any


AUTO_PRESET = "auto"
# checkpoint array names: the model's and the optimizer's under their own prefix
MODEL_PREFIX = "model/"
OPTIMIZER_PREFIX = "engine/"


def split_checkpoint_arrays(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    return {"model": {name[len(MODEL_PREFIX):]: array for name, array in arrays.items() if name.startswith(MODEL_PREFIX)},
            "optimizer": {name[len(OPTIMIZER_PREFIX):]: array for name, array in arrays.items() if name.startswith(OPTIMIZER_PREFIX)}}


def resolve_preset_name(env: EnvSource | None, preset: str | None) -> str | None:
    """'auto': the preset named like the env id, if there is one; None: no preset; else that preset."""
    if preset == AUTO_PRESET:
        return preset_for_env(env) if isinstance(env, str) else None
    return preset


def resolve_config(env: EnvSource | None, config: PPOConfig | dict | None, preset: str | None = AUTO_PRESET) -> PPOConfig:
    """A PPOConfig as given; otherwise defaults < preset < the dict's keys, as `ppokit train` merges them."""
    if isinstance(config, PPOConfig):
        if preset not in (AUTO_PRESET, None):
            raise ConfigError(f"preset={preset!r} applies to a dict of overrides; a PPOConfig is used as given "
                              f"(pass a dict, or build the PPOConfig from load_preset({preset!r}))")
        resolved = copy.deepcopy(config)
        resolved.validate()
        return resolved
    if config is not None and not isinstance(config, dict):
        raise ConfigError(f"config must be a PPOConfig, a dict or None, got {type(config).__name__}")
    name = resolve_preset_name(env, preset)
    values = load_preset(name)[1] if name is not None else {}
    return PPOConfig.from_dict(values | (config or {}), source="config" if config else f"preset {name!r}")


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
        main = self.world.is_main  # the other ranks log nothing
        self.logger = UpdateLog(self.run_dir if main else None, self.global_step + (plan_end - self.num_updates) * config.rollout_size,
                                start_step=self.global_step, tensorboard=config.tensorboard and self.run_dir is not None and main,
                                progress=self.progress_bar if main else False, console=self.verbose and main, log_interval=config.log_interval,
                                resume_after_update=self.num_updates if self.resumed_from is not None else None, last_update=plan_end)
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
            explained, steps = self._global_rollout_figures(explained, self.collector.global_step - steps_before)
            episodes = [(float(r), int(n)) for r, n in self.world.gather_rows(np.array(episodes, dtype=np.float64).reshape(-1, 2))]
            self.global_step += steps
        else:
            self.global_step = self.collector.global_step
        self.num_updates += 1
        self._check_non_finite(stats)
        metrics = {
            "charts/learning_rate": learning_rate,
            "charts/clip_range": clip_range,
            "losses/policy_loss": stats["policy_loss"],
            "losses/value_loss": stats["value_loss"],
            "losses/entropy": stats["entropy"],
            "losses/old_approx_kl": stats["old_approx_kl"],
            "losses/approx_kl": stats["approx_kl"],
            "losses/clipfrac": stats["clipfrac"],
            "losses/explained_variance": explained,
            "losses/grad_norm": stats["grad_norm"],
            "debug/first_ratio_deviation": stats["first_ratio_deviation"],
            "debug/stopped_early": stats["stopped_early"],
            "debug/skipped_steps": stats["skipped_steps"],
        }
        self.last_metrics = self.logger.log_update(self.global_step, self.num_updates, metrics, episodes)
        self.recent_returns = list(self.logger.recent_returns)
        results = [cb.on_update(self.last_metrics) for cb in callbacks]
        return all(result is not False for result in results)

    def _global_rollout_figures(self, explained_sums: list[float], local_steps: int) -> tuple[float, int]:
        """The explained variance over every rank's rollout and the env steps all ranks took (one exchange)."""
        total = self.world.sum(np.array([*explained_sums, local_steps], dtype=np.float64))
        return explained_variance_from_sums(total[:-1]), int(total[-1])

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
        """Write a full training checkpoint into the run dir (None without a run dir)."""
        if self.run_dir is None:
            return None
        if not self.policy.weights_finite():  # (the same weights on every rank: they all skip)
            self.logger.message(f"warning: update {self.num_updates}: weights are not finite; no checkpoint written (the last good one is kept)")
            return None
        state = self.state_dict()
        training = state["training"]
        if self.world.distributed:  # rank 0 writes every rank's random streams
            training |= {"world_size": self.world.size, "ranks": self.world.gather_json({"rng": training["rng"]})}
            if not self.world.is_main:
                return None
        arrays = {MODEL_PREFIX + name: array for name, array in state["model"].items()}
        arrays |= {OPTIMIZER_PREFIX + name: array for name, array in state["optimizer"].items()}
        meta = {"env_id": self.env_id, "config": self.config.to_dict(), "observation_space": space_to_json(self.observation_space),
                "action_space": space_to_json(self.action_space), "policy": self.policy_kind, "engine": self.engine.name, **training}
        return save_checkpoint(self.run_dir, self.num_updates, arrays, meta, self.config.keep_checkpoints)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly, at an update boundary: ``model`` (weights and
        normalizer statistics) and ``optimizer`` (the engine's state) as numpy arrays, ``training``
        (counters, schedule position, recent returns and every random stream of the agent) as JSON values."""
        training = {
            "global_step": self.global_step,
            "num_updates": self.num_updates,
            "plan": dict(self.plan),
            "consecutive_skipped_steps": self.consecutive_skipped_steps,
            "best_eval_return": self.best_eval_return,
            "recent_returns": list(self.recent_returns),
            "rng": {
                "actions": self.rng.bit_generator.state,
                "minibatch_order": self.shuffle_rng.bit_generator.state,
                "predict": self.predict_rng.bit_generator.state,
                "env_action_space": self.envs.action_space.np_random.bit_generator.state if self.envs is not None else None,
            },
            # episodes in flight are not saved: the envs restart, reset with this seed (a function of the position)
            "env_reset_seed": self.config.seed + 1_000_003 * (self.num_updates + 1),
        }
        return {"model": self.policy.state_dict(), "optimizer": self.engine.state_dict(), "training": training}

    def load_state_dict(self, state: dict[str, Any], source: str = "state dict") -> None:
        """Put back what ``state_dict()`` returned (into an agent built with the same config and spaces)."""
        check_state_dict(self.policy.state_dict(), state["model"], source)
        if self.engine.name == "numpy":  # (a fresh torch optimizer has no per-parameter state to compare with)
            check_state_dict(self.engine.state_dict(), state["optimizer"], source)
        self.policy.load_state_dict(state["model"])
        self.engine.load_state_dict(state["optimizer"])
        training = state["training"]
        # another world size may load it to predict; learn() refuses to continue it (_check_resumable)
        self.checkpoint_world_size = int(training.get("world_size", 1))
        try:
            self.global_step = int(training["global_step"])
            self.num_updates = int(training["num_updates"])
            self.plan = {"start_update": int(training["plan"]["start_update"]), "updates": int(training["plan"]["updates"])}
            self.consecutive_skipped_steps = int(training.get("consecutive_skipped_steps", 0))
            best = training.get("best_eval_return")
            self.best_eval_return = None if best is None else float(best)
            self.recent_returns = [float(r) for r in training.get("recent_returns", [])]
            same_world = self.checkpoint_world_size == self.world.size
            rng = training["ranks"][self.world.rank]["rng"] if self.world.distributed and same_world else training["rng"]
            self.rng.bit_generator.state = rng["actions"]
            self.shuffle_rng.bit_generator.state = rng["minibatch_order"]
            self.predict_rng.bit_generator.state = rng["predict"]
            self.pending_env_state = {"seed": int(training["env_reset_seed"]), "action_space": rng.get("env_action_space")}
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: checkpoint state is incomplete or malformed ({type(exc).__name__}: {exc})") from None

    def _train_on_rollout(self, settings: UpdateSettings) -> tuple[dict[str, float], float, list[tuple[float, int]]]:
        """Collect a rollout, score it, compute advantages and run the update.

        Returns the update's statistics, the explained variance and the episodes that finished.
        """
        config = self.config
        normalizers_before = self._normalizer_states() if self.world.distributed else None
        rollout, last_value, episodes = self.collector.collect()
        if normalizers_before is not None:
            self._merge_normalizers(normalizers_before)
        flat = rollout.flatten()
        num_steps, num_envs = rollout.num_steps, rollout.num_envs
        recurrent = self.policy.recurrent
        # reset steps of NEXT_STEP envs (mask 0) are left out of the update altogether; data parallel (so that
        # every rank has as many samples) and for a recurrent policy (whose sequences must stay whole), they
        # stay in with weight 0
        keep = None if rollout.mask is None or self.world.distributed or recurrent else np.flatnonzero(flat["mask"])
        taken = [name for name in ("obs", "actions", *POLICY_INPUTS) if name in flat]
        inputs = {name: flat[name] if keep is None else flat[name][keep] for name in taken}
        obs = inputs["obs"]

        def order(_epoch: int) -> np.ndarray:  # a recurrent policy's minibatches are chunks of consecutive steps
            return sequence_order(self.shuffle_rng, num_steps, num_envs, config.sequence_length) if recurrent else self.shuffle_rng.permutation(len(obs))

        first_order = order(0)
        # not stored while acting: acting runs the actor alone on n_envs rows, and a row's log-prob rounds differently in
        # a batch of another shape, so the first ratio is exactly 1 only when scored in the first epoch's minibatches
        logprobs, kept_values = score_in_minibatches(self.engine, inputs, first_order, settings.minibatch_size)
        values = kept_values
        if keep is not None:  # masked steps get value 0: only their own (unused) advantages read it
            values = np.zeros(num_steps * num_envs, dtype=np.float32)
            values[keep] = kept_values
        values = values.reshape(num_steps, num_envs)
        next_values = np.where(rollout["truncated"], rollout["truncated_values"], next_values_from(values, last_value))
        advantages, returns = gae(rollout["rewards"], values, next_values, rollout["terminated"], rollout["dones"], config.gamma, config.gae_lambda)
        samples = inputs | {"logprobs": logprobs, "values": kept_values, "advantages": advantages.reshape(-1), "returns": returns.reshape(-1)}
        if keep is not None:
            samples["advantages"], samples["returns"] = samples["advantages"][keep], samples["returns"][keep]
        if keep is None and rollout.mask is not None:
            samples["mask"] = flat["mask"]
        stats = self.engine.update(samples, settings, lambda epoch: first_order if epoch == 0 else order(epoch))
        if self.world.distributed:  # this rank's share; _one_update adds the ranks up
            return stats, explained_variance_sums(samples["values"], samples["returns"], samples.get("mask")), episodes
        return stats, explained_variance(samples["values"], samples["returns"], samples.get("mask")), episodes

    def _normalizer_states(self) -> dict[str, dict]:
        """Copies of the statistics of the enabled normalizers, from when the ranks last agreed."""
        states = {}
        for name in ("obs_normalizer", "reward_scaler"):
            normalizer = getattr(self.policy, name, None)
            if normalizer is not None and normalizer.enabled:
                states[name] = {key: np.array(value, copy=True) for key, value in normalizer.stats.state_dict().items()}
        return states

    def _merge_normalizers(self, before: dict[str, dict]) -> None:
        """Data parallel: after each rollout every rank's normalizers hold the statistics of all ranks' steps."""
        for name, state in before.items():
            merge_over_ranks(getattr(self.policy, name).stats, state, self.world)

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
        single = self._is_single(observation)
        batch = np.asarray(observation)[None] if single and not isinstance(observation, (dict, tuple)) else observation
        obs = self.policy.prepare(batch)
        mask = self._predict_mask(observation, action_mask, len(obs))
        if self.policy.recurrent:
            state = self.policy.initial_state(len(obs)) if state is None else np.array(state, dtype=np.float32).reshape(len(obs), -1)
            if state.shape[1] != self.policy.state_size:
                raise InputError(f"state has {state.shape[1]} values per copy; this policy's memory has {self.policy.state_size} "
                                 f"(pass what the previous predict() returned, or None)")
            if episode_start is not None:
                state[np.asarray(episode_start, dtype=bool).reshape(len(obs))] = 0.0
        actions, next_state = self.policy.act(obs, self.predict_rng, deterministic, action_mask=mask, state=state)
        env_actions = self.policy.actions_to_env(actions)
        env_actions = env_actions[0] if single else env_actions
        if self.policy.recurrent:
            return env_actions, (next_state[0] if single else next_state)
        return env_actions

    def _is_single(self, observation) -> bool:
        """Whether ``observation`` is one observation rather than a batch of them."""
        encoder = getattr(self.policy, "encoder", None)
        if encoder is not None and encoder.multi:
            return encoder.is_single(observation)
        return np.asarray(observation).shape == self.observation_space.shape

    def _predict_mask(self, observation, action_mask, rows: int) -> np.ndarray | None:
        if action_mask is None and self.config.action_masks != "off" and isinstance(observation, dict) and ACTION_MASK_KEY in observation:
            action_mask = observation[ACTION_MASK_KEY]
        if action_mask is None:
            return None
        dist = self.policy.dist
        if not getattr(dist, "supports_masks", False):
            raise InputError(f"action_mask applies to Discrete and MultiDiscrete actions; this model's are {self.action_space}")
        try:
            mask = np.asarray(action_mask).astype(bool).reshape(rows, dist.param_size)
        except ValueError:
            raise InputError(f"action_mask has shape {np.shape(action_mask)}; expected {dist.param_size} entries per observation "
                             f"(one per action of {self.action_space}), for {rows} observation(s)") from None
        bad = first_without_valid_action(mask, logit_bounds(dist))
        if bad is not None:
            raise InputError(f"action_mask of observation {bad} allows no action: {mask[bad].astype(int).tolist()}; expected at least one valid action")
        return mask

    # ------------------------------------------------------------------ saving
    def save(self, directory: str | Path) -> Path:
        """Write model.safetensors (weights and normalizer statistics) and model.json (config and spaces).

        Data parallel, rank 0 alone writes (every rank holds the same model); the others return the path."""
        if not self.world.is_main:
            return Path(directory)
        metadata = {
            "env_id": self.env_id,
            "config": self.config.to_dict(),
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "policy": self.policy_kind,
            "global_step": self.global_step,
        }
        return save_model(directory, self.policy.state_dict(), metadata)

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
        directory = Path(directory)
        is_checkpoint = (directory / CHECKPOINT_META_FILE).exists() or bool(list_checkpoints(directory))
        if is_checkpoint:
            arrays, meta, checkpoint_dir = load_checkpoint(directory)
            source = f"checkpoint {str(checkpoint_dir)!r}"
            if run_dir is None:
                run_dir = checkpoint_dir.parent.parent
        else:
            arrays, meta = load_model(directory)
            source = f"model {str(directory)!r}"
        try:
            config = PPOConfig.from_dict(meta["config"], source=f"{source} config")
            observation_space = space_from_json(meta["observation_space"])
            action_space = space_from_json(meta["action_space"])
        except KeyError as exc:
            raise CheckpointError(f"{source}: metadata lacks the field {exc.args[0]!r}") from None
        module = module_to_load(config, meta, module, features_extractor, source)
        if meta.get("format_version") == 1 and meta.get("policy") in ("cnn", "multi_input", "lstm"):
            from ppokit.gym.policies.torch_policy import rename_pre_parts_weights

            arrays = rename_pre_parts_weights(arrays, meta["policy"])
        # the config is stored whole (which preset it came from is in the run's config.yaml)
        agent = cls(env if env is not None else meta.get("env_id"), config, run_dir=run_dir, progress_bar=progress_bar, verbose=verbose,
                    spaces=(observation_space, action_space), module=module)
        if is_checkpoint:
            if meta.get("engine") != agent.engine.name:
                raise CheckpointError(f"{source}: written by the {meta.get('engine')!r} engine, but the config selects {agent.engine.name!r}")
            agent.load_state_dict(split_checkpoint_arrays(arrays) | {"training": meta}, source)
            agent.resumed_from = checkpoint_dir
        else:
            check_state_dict(agent.policy.state_dict(), arrays, source)
            agent.policy.load_state_dict(arrays)
            agent.global_step = int(meta.get("global_step", 0))
        return agent


def module_to_load(config: PPOConfig, meta: dict, module, features_extractor: str | None, source: str):
    """The user module to load a saved model into; refuses to import code that only the saved files name."""
    spec = config.module
    if isinstance(module, str):
        config.module = module
        module = user_module(None, config)
    elif meta.get("policy") == "custom" and module is None:
        hint = f"module={spec!r} (ppokit eval ... module={spec})" if spec else "a fresh instance as PPO.load(..., module=...)"
        raise ConfigError(f"{source} was trained with a torch module of your own: pass {hint}")
    extractor = config.features_extractor
    if ":" in extractor and features_extractor != extractor:
        from ppokit.gym.policies.features import FEATURES_EXTRACTORS

        if extractor not in FEATURES_EXTRACTORS:
            raise ConfigError(f"{source} was trained with features_extractor {extractor!r}: pass features_extractor={extractor!r} to import it "
                              f"(ppokit eval ... features_extractor={extractor})")
    return module


def check_divisible_by_world(config: PPOConfig, world) -> None:
    """Data parallel: each rank takes n_envs / N envs and minibatch_size / N samples of every minibatch
    (for policy 'lstm', whole chunks: a multiple of lstm_sequence_length)."""
    check_divisible({"n_envs": config.n_envs, "minibatch_size": config.minibatch_size}, world)
    if config.policy == "lstm" and (config.minibatch_size // world.size) % config.sequence_length:
        raise ConfigError(f"policy 'lstm' with {world.size} processes: each one's share of a minibatch (minibatch_size / {world.size} = "
                          f"{config.minibatch_size // world.size}) must be whole chunks, a multiple of lstm_sequence_length ({config.sequence_length})")


def score_in_minibatches(engine, inputs: dict[str, np.ndarray], order: np.ndarray, minibatch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-probs and values of every sample (``inputs``: obs, actions and the ``POLICY_INPUTS`` there are),
    computed in the first epoch's minibatch layout.

    The first minibatch of the update then repeats exactly this computation (same rows, same batch
    shape), so its probability ratio is exactly 1: matrix kernels may round a row differently
    depending on the batch it sits in.
    """
    count = len(inputs["obs"])
    logprobs = np.empty(count, dtype=np.float32)
    values = np.empty(count, dtype=np.float32)
    for start in range(0, count, minibatch_size):
        index = order[start : start + minibatch_size]
        rows = {name: array[index] for name, array in inputs.items()}
        logprobs[index], values[index] = engine.score(rows.pop("obs"), rows.pop("actions"), **rows)
    return logprobs, values
