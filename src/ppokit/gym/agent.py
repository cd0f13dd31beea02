"""The Python API: PPO(env, config).learn(), .predict(), .save(), PPO.load()."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from ppokit.checkpoint import check_state_dict, load_model, save_model
from ppokit.config import PPOConfig
from ppokit.core.advantages import gae, next_values_from
from ppokit.core.schedules import make_schedule
from ppokit.core.settings import UpdateSettings
from ppokit.errors import CheckpointError, ConfigError
from ppokit.gym.envs import EnvSource, describe, make_env, make_vector_env
from ppokit.gym.numpy_engine import NumpyEngine
from ppokit.gym.policy import Policy
from ppokit.gym.presets import has_preset, load_preset
from ppokit.gym.rollout import RolloutCollector
from ppokit.gym.spaces import space_from_json, space_to_json
from ppokit.logging import RunLogger

# callback(metrics) -> False stops training after the current update
Callback = Callable[[dict[str, float]], Any]


def resolve_config(env: EnvSource | None, config: PPOConfig | dict | None) -> PPOConfig:
    """A PPOConfig as given; a dict on top of the defaults; None: the env's preset if it has one."""
    if isinstance(config, PPOConfig):
        resolved = copy.deepcopy(config)
        resolved.validate()
        return resolved
    if isinstance(config, dict):
        return PPOConfig.from_dict(config)
    if config is None:
        if isinstance(env, str) and has_preset(env):
            return PPOConfig.from_dict(load_preset(env)[1], source=f"preset {env!r}")
        return PPOConfig()
    raise ConfigError(f"config must be a PPOConfig, a dict or None, got {type(config).__name__}")


class PPO:
    """PPO on a Gymnasium env given by id (``"CartPole-v1"``) or by a factory returning a ``gym.Env``."""

    def __init__(self, env: EnvSource, config: PPOConfig | dict | None = None, *, run_dir: str | Path | None = None, progress_bar: bool | None = None, verbose: bool = True):
        self.env_source = env
        self.config = resolve_config(env, config)
        probe = make_env(env, self.config.env_kwargs)
        spaces = (probe.observation_space, probe.action_space)
        probe.close()
        self._setup(spaces[0], spaces[1], run_dir, progress_bar, verbose)

    def _setup(self, observation_space, action_space, run_dir, progress_bar, verbose) -> None:
        config = self.config
        random.seed(config.seed)
        np.random.seed(config.seed)
        # separate streams: actions, minibatch order, initial weights, predict() sampling
        action_seed, shuffle_seed, init_seed, predict_seed = np.random.SeedSequence(config.seed).spawn(4)
        self.rng = np.random.default_rng(action_seed)
        self.shuffle_rng = np.random.default_rng(shuffle_seed)
        self.predict_rng = np.random.default_rng(predict_seed)
        self.policy = Policy(observation_space, action_space, config)
        self.policy.params.initialize(np.random.default_rng(init_seed), config.ortho_init, config.log_std_init)
        self.engine = make_engine(self.policy, config)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress_bar = progress_bar
        self.verbose = verbose
        self.global_step = 0
        self.num_updates = 0
        self.envs = None
        self.collector: RolloutCollector | None = None
        self.logger: RunLogger | None = None
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
    def learn(self, total_steps: int | None = None, callback: Callback | None = None) -> "PPO":
        """Train for ``total_steps`` more env steps (default: config.total_steps)."""
        config = self.config
        total_steps = config.total_steps if total_steps is None else int(total_steps)
        if total_steps < config.rollout_size:
            raise ConfigError(f"total_steps={total_steps} is smaller than one rollout (n_envs * n_steps = {config.rollout_size})")
        if self.env_source is None:
            raise ConfigError("this model has no environment to learn from: pass env= to PPO.load()")
        self._ensure_envs()
        n_updates = total_steps // config.rollout_size
        lr_at = make_schedule(config.lr_schedule, config.learning_rate)
        clip_at = make_schedule(config.clip_schedule, config.clip_range)
        start_step = self.global_step
        self.logger = RunLogger(self.run_dir, start_step + n_updates * config.rollout_size, start_step=start_step,
                                tensorboard=config.tensorboard and self.run_dir is not None,
                                progress=self.progress_bar, console=self.verbose, log_interval=config.log_interval)
        try:
            for update in range(n_updates):
                progress = update / n_updates
                learning_rate, clip_range = lr_at(progress), clip_at(progress)
                self.engine.set_learning_rate(learning_rate)
                stats, explained, episodes = self._train_on_rollout(self._update_settings(clip_range))
                self.global_step = self.collector.global_step
                self.num_updates += 1

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
                }
                self.last_metrics = self.logger.log_update(self.global_step, self.num_updates, metrics, episodes)
                if callback is not None and callback(self.last_metrics) is False:
                    break
        finally:
            self.logger.close()
        return self

    def _train_on_rollout(self, settings: UpdateSettings) -> tuple[dict[str, float], float, list[tuple[float, int]]]:
        """Collect a rollout, score it, compute advantages and run the update.

        Returns the update's statistics, the explained variance and the episodes that finished.
        """
        config = self.config
        rollout, last_value, episodes = self.collector.collect()
        flat = rollout.flatten()
        num_steps, num_envs = rollout.num_steps, rollout.num_envs
        # reset steps of NEXT_STEP envs (mask 0) are left out of the update altogether
        keep = None if rollout.mask is None else np.flatnonzero(flat["mask"])
        obs, actions = (flat["obs"], flat["actions"]) if keep is None else (flat["obs"][keep], flat["actions"][keep])
        first_order = self.shuffle_rng.permutation(len(obs))
        logprobs, kept_values = score_in_minibatches(self.engine, obs, actions, first_order, config.minibatch_size)
        values = kept_values if keep is None else np.zeros(num_steps * num_envs, dtype=np.float32)
        if keep is not None:
            values[keep] = kept_values
        values = values.reshape(num_steps, num_envs)
        next_values = np.where(rollout["truncated"], rollout["truncated_values"], next_values_from(values, last_value))
        advantages, returns = gae(rollout["rewards"], values, next_values, rollout["terminated"], rollout["dones"], config.gamma, config.gae_lambda)
        samples = {"obs": obs, "actions": actions, "logprobs": logprobs, "values": kept_values,
                   "advantages": advantages.reshape(-1), "returns": returns.reshape(-1)}
        if keep is not None:
            samples["advantages"], samples["returns"] = samples["advantages"][keep], samples["returns"][keep]
        stats = self.engine.update(samples, settings, lambda epoch: first_order if epoch == 0 else self.shuffle_rng.permutation(len(obs)))
        return stats, explained_variance(samples["values"], samples["returns"]), episodes

    def _update_settings(self, clip_range: float) -> UpdateSettings:
        c = self.config
        return UpdateSettings(n_epochs=c.n_epochs, minibatch_size=c.minibatch_size, clip_range=clip_range,
                              clip_range_vf=c.clip_range_vf, ent_coef=c.ent_coef, vf_coef=c.vf_coef,
                              max_grad_norm=c.max_grad_norm, target_kl=c.target_kl, normalize_advantage=c.normalize_advantage)

    def _ensure_envs(self) -> None:
        if self.envs is not None:
            return
        self.envs = make_vector_env(self.env_source, self.config.n_envs, self.config.vec_env, self.config.env_kwargs)
        self._check_spaces_match(self.envs.single_observation_space, self.envs.single_action_space)
        self.collector = RolloutCollector(self.envs, self.policy, self.config.n_steps, describe(self.env_source), self.rng,
                                          bootstrap_truncated=self.config.bootstrap_truncated)
        self.collector.global_step = self.global_step
        self.collector.reset(seed=self.config.seed)

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
    def predict(self, observation, deterministic: bool = False) -> np.ndarray:
        """Actions for one observation or a batch of them, in the env's format (Box actions clipped)."""
        obs = np.asarray(observation)
        single = obs.shape == self.observation_space.shape
        batch = obs[None] if single else obs
        prepared = self.policy.prepare(batch)
        actions = self.policy.mode(prepared) if deterministic else self.policy.sample(prepared, self.predict_rng)
        env_actions = self.policy.actions_to_env(actions)
        return env_actions[0] if single else env_actions

    # ------------------------------------------------------------------ saving
    def save(self, directory: str | Path) -> Path:
        """Write model.safetensors (weights and normalizer statistics) and model.json (config and spaces)."""
        metadata = {
            "env_id": self.env_id,
            "config": self.config.to_dict(),
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "global_step": self.global_step,
        }
        return save_model(directory, self.policy.state_dict(), metadata)

    @classmethod
    def load(cls, directory: str | Path, env: EnvSource | None = None, *, run_dir: str | Path | None = None, progress_bar: bool | None = None, verbose: bool = True) -> "PPO":
        """Rebuild a saved model; ``env`` defaults to the saved env id (needed only to keep learning)."""
        tensors, meta = load_model(directory)
        source = f"model {str(directory)!r}"
        try:
            config = PPOConfig.from_dict(meta["config"], source=f"{source} config")
            observation_space = space_from_json(meta["observation_space"])
            action_space = space_from_json(meta["action_space"])
        except KeyError as exc:
            raise CheckpointError(f"{source}: model.json lacks the field {exc.args[0]!r}") from None
        agent = cls.__new__(cls)
        agent.env_source = env if env is not None else meta.get("env_id")
        agent.config = config
        agent._setup(observation_space, action_space, run_dir, progress_bar, verbose)
        check_state_dict(agent.policy.state_dict(), tensors, source)
        agent.policy.params.load_state_dict(tensors)
        agent.global_step = int(meta.get("global_step", 0))
        return agent


def make_engine(policy: Policy, config: PPOConfig):
    """The compute engine that scores rollouts and runs the update (see the 'engine' config key)."""
    if config.engine == "torch":
        from ppokit.gym.torch_engine import TorchEngine  # imports torch: only when asked for

        return TorchEngine(policy.params, policy.dist, config.activation, config.learning_rate, config.adam_eps, config.torch_threads, config.seed)
    return NumpyEngine(policy.params, policy.dist, config.activation, config.learning_rate, config.adam_eps)


def score_in_minibatches(engine, obs: np.ndarray, actions: np.ndarray, order: np.ndarray, minibatch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-probs and values of every sample, computed in the first epoch's minibatch layout.

    The first minibatch of the update then repeats exactly this computation (same rows, same batch
    shape), so its probability ratio is exactly 1: matrix kernels may round a row differently
    depending on the batch it sits in.
    """
    logprobs = np.empty(len(obs), dtype=np.float32)
    values = np.empty(len(obs), dtype=np.float32)
    for start in range(0, len(obs), minibatch_size):
        index = order[start : start + minibatch_size]
        logprobs[index], values[index] = engine.score(obs[index], actions[index])
    return logprobs, values


def explained_variance(values: np.ndarray, returns: np.ndarray) -> float:
    """1 - Var[returns - values] / Var[returns]; NaN when the returns are constant."""
    var_returns = float(np.var(returns))
    return float("nan") if var_returns == 0.0 else 1.0 - float(np.var(returns - values)) / var_returns
