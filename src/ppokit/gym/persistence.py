"""A gym PPO agent on disk: saved models (weights + model.json), training checkpoints (``ppokit.checkpoint``:
safetensors + JSON, nothing pickled) and rebuilding an agent from either (``PPO.save``, ``PPO.load``).

A checkpoint holds the model's arrays under ``model/``, the engine's optimizer state under ``engine/`` and, as
JSON, what ``training_state`` records: counters, plan, recent returns and every random stream of the agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ppokit.checkpoint import CHECKPOINT_META_FILE, check_state_dict, list_checkpoints, load_checkpoint, load_model, save_checkpoint, save_model
from ppokit.errors import CheckpointError, ConfigError
from ppokit.gym.build import user_module
from ppokit.gym.config import PPOConfig
from ppokit.gym.envs.spaces import space_from_json, space_to_json

MODEL_PREFIX = "model/"
OPTIMIZER_PREFIX = "engine/"


def model_metadata(agent) -> dict[str, Any]:
    """What model.json and a checkpoint's JSON both record: the env, the whole config, the spaces and the policy kind."""
    return {"env_id": agent.env_id, "config": agent.config.to_dict(), "observation_space": space_to_json(agent.observation_space),
            "action_space": space_to_json(agent.action_space), "policy": agent.policy_kind}


def save_agent_model(agent, directory: str | Path) -> Path:
    """model.safetensors (weights and normalizer statistics) and model.json; rank 0 alone writes."""
    if not agent.world.is_main:
        return Path(directory)
    return save_model(directory, agent.policy.state_dict(), model_metadata(agent) | {"global_step": agent.global_step})


def training_state(agent) -> dict[str, Any]:
    """The JSON part of a checkpoint, at an update boundary."""
    return {
        "global_step": agent.global_step,
        "num_updates": agent.num_updates,
        "plan": dict(agent.plan),
        "consecutive_skipped_steps": agent.consecutive_skipped_steps,
        "best_eval_return": agent.best_eval_return,
        "recent_returns": list(agent.recent_returns),
        "rng": {
            "actions": agent.rng.bit_generator.state,
            "minibatch_order": agent.shuffle_rng.bit_generator.state,
            "predict": agent.predict_rng.bit_generator.state,
            "env_action_space": agent.envs.action_space.np_random.bit_generator.state if agent.envs is not None else None,
        },
        # episodes in flight are not saved: the envs restart, reset with this seed (a function of the position)
        "env_reset_seed": agent.config.seed + 1_000_003 * (agent.num_updates + 1),
    }


def restore_training_state(agent, training: dict[str, Any], source: str) -> None:
    """Put back what ``training_state`` recorded (data parallel: this rank's own random streams)."""
    # another world size may load it to predict; learn() refuses to continue it (PPO._check_resumable)
    agent.checkpoint_world_size = int(training.get("world_size", 1))
    try:
        agent.global_step = int(training["global_step"])
        agent.num_updates = int(training["num_updates"])
        agent.plan = {"start_update": int(training["plan"]["start_update"]), "updates": int(training["plan"]["updates"])}
        agent.consecutive_skipped_steps = int(training.get("consecutive_skipped_steps", 0))
        best = training.get("best_eval_return")
        agent.best_eval_return = None if best is None else float(best)
        agent.recent_returns = [float(r) for r in training.get("recent_returns", [])]
        same_world = agent.checkpoint_world_size == agent.world.size
        rng = training["ranks"][agent.world.rank]["rng"] if agent.world.distributed and same_world else training["rng"]
        agent.rng.bit_generator.state = rng["actions"]
        agent.shuffle_rng.bit_generator.state = rng["minibatch_order"]
        agent.predict_rng.bit_generator.state = rng["predict"]
        agent.pending_env_state = {"seed": int(training["env_reset_seed"]), "action_space": rng.get("env_action_space")}
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: checkpoint state is incomplete or malformed ({type(exc).__name__}: {exc})") from None


def write_checkpoint(agent) -> Path | None:
    """A full training checkpoint in the agent's run dir (None without one, on ranks other than 0, or when the weights
    are not finite: then the last good checkpoint is kept)."""
    if agent.run_dir is None:
        return None
    if not agent.policy.weights_finite():  # (the same weights on every rank: they all skip)
        agent.logger.message(f"warning: update {agent.num_updates}: weights are not finite; no checkpoint written (the last good one is kept)")
        return None
    state = agent.state_dict()
    training = state["training"]
    if agent.world.distributed:  # rank 0 writes every rank's random streams
        training |= {"world_size": agent.world.size, "ranks": agent.world.gather_json({"rng": training["rng"]})}
        if not agent.world.is_main:
            return None
    arrays = {MODEL_PREFIX + name: array for name, array in state["model"].items()}
    arrays |= {OPTIMIZER_PREFIX + name: array for name, array in state["optimizer"].items()}
    meta = model_metadata(agent) | {"engine": agent.engine.name, **training}
    return save_checkpoint(agent.run_dir, agent.num_updates, arrays, meta, agent.config.keep_checkpoints)


def split_checkpoint_arrays(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    return {"model": {name[len(MODEL_PREFIX):]: array for name, array in arrays.items() if name.startswith(MODEL_PREFIX)},
            "optimizer": {name[len(OPTIMIZER_PREFIX):]: array for name, array in arrays.items() if name.startswith(OPTIMIZER_PREFIX)}}


def load_agent(cls, directory: str | Path, env=None, *, run_dir=None, progress_bar=None, verbose: bool = True, module=None,
               features_extractor: str | None = None):
    """``cls`` (PPO) rebuilt from a model folder, a checkpoint folder or a run folder's newest checkpoint (see ``PPO.load``)."""
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
        spaces = (space_from_json(meta["observation_space"]), space_from_json(meta["action_space"]))
    except KeyError as exc:
        raise CheckpointError(f"{source}: metadata lacks the field {exc.args[0]!r}") from None
    module = module_to_load(config, meta, module, features_extractor, source)
    if meta.get("format_version") == 1 and meta.get("policy") in ("cnn", "multi_input", "lstm"):
        from ppokit.gym.policies.torch_policy import rename_pre_parts_weights

        arrays = rename_pre_parts_weights(arrays, meta["policy"])
    # the config is stored whole (which preset it came from is in the run's config.yaml)
    agent = cls(env if env is not None else meta.get("env_id"), config, run_dir=run_dir, progress_bar=progress_bar, verbose=verbose,
                spaces=spaces, module=module)
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
