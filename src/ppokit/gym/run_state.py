"""What a checkpoint holds beyond the model, and putting it back: optimizer, counters, schedule
position and every random state, as arrays (safetensors) and plain JSON.

Episodes in flight are not saved: a resumed run resets its envs, with a seed recorded here, and
everything else continues exactly.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np

from ppokit.checkpoint import check_state_dict
from ppokit.errors import CheckpointError
from ppokit.gym.spaces import space_to_json

if TYPE_CHECKING:
    from ppokit.gym.agent import PPO

MODEL_PREFIX = "model/"
ENGINE_PREFIX = "engine/"


def capture(agent: "PPO") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, JSON state) of the agent at an update boundary."""
    arrays = {MODEL_PREFIX + name: array for name, array in agent.policy.state_dict().items()}
    arrays |= {ENGINE_PREFIX + name: array for name, array in agent.engine.state_dict().items()}
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    state = {
        "env_id": agent.env_id,
        "config": agent.config.to_dict(),
        "observation_space": space_to_json(agent.observation_space),
        "action_space": space_to_json(agent.action_space),
        "engine": agent.engine.name,
        "global_step": agent.global_step,
        "num_updates": agent.num_updates,
        "plan": dict(agent.plan),
        "consecutive_skipped_steps": agent.consecutive_skipped_steps,
        "best_eval_return": agent.best_eval_return,
        "recent_returns": list(agent.recent_returns),
        "rng": {
            "python": [python_state[0], list(python_state[1]), python_state[2]],
            "numpy_global": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
            "actions": agent.rng.bit_generator.state,
            "minibatch_order": agent.shuffle_rng.bit_generator.state,
            "predict": agent.predict_rng.bit_generator.state,
            "env_action_space": agent.envs.action_space.np_random.bit_generator.state if agent.envs is not None else None,
        },
        # the envs restart their episodes on resume, reset with this seed (a function of the position)
        "env_reset_seed": agent.config.seed + 1_000_003 * (agent.num_updates + 1),
    }
    return arrays, state


def restore(agent: "PPO", arrays: dict[str, np.ndarray], state: dict[str, Any], source: str) -> None:
    """Put a captured state back into a freshly built agent with the same config."""
    if state.get("engine") != agent.engine.name:
        raise CheckpointError(f"{source}: written by the {state.get('engine')!r} engine, but the config selects {agent.engine.name!r}")
    model = {name[len(MODEL_PREFIX):]: array for name, array in arrays.items() if name.startswith(MODEL_PREFIX)}
    engine = {name[len(ENGINE_PREFIX):]: array for name, array in arrays.items() if name.startswith(ENGINE_PREFIX)}
    check_state_dict(agent.policy.state_dict(), model, source)
    if agent.engine.name == "numpy":  # (a fresh torch optimizer has no per-parameter state to compare with)
        check_state_dict(agent.engine.state_dict(), engine, source)
    agent.policy.params.load_state_dict(model)
    agent.engine.load_state_dict(engine)
    try:
        agent.global_step = int(state["global_step"])
        agent.num_updates = int(state["num_updates"])
        agent.plan = {"start_update": int(state["plan"]["start_update"]), "updates": int(state["plan"]["updates"])}
        agent.consecutive_skipped_steps = int(state.get("consecutive_skipped_steps", 0))
        best = state.get("best_eval_return")
        agent.best_eval_return = None if best is None else float(best)
        agent.recent_returns = [float(r) for r in state.get("recent_returns", [])]
        rng = state["rng"]
        python = rng["python"]
        random.setstate((python[0], tuple(python[1]), python[2]))
        numpy_global = rng["numpy_global"]
        np.random.set_state((numpy_global[0], np.array(numpy_global[1], dtype=np.uint32), *numpy_global[2:]))
        agent.rng.bit_generator.state = rng["actions"]
        agent.shuffle_rng.bit_generator.state = rng["minibatch_order"]
        agent.predict_rng.bit_generator.state = rng["predict"]
        agent.pending_env_state = {"seed": int(state["env_reset_seed"]), "action_space": rng.get("env_action_space")}
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: checkpoint state is incomplete or malformed ({type(exc).__name__}: {exc})") from None
