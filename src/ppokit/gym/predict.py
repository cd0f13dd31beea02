"""A trained policy's actions for observations given by the caller (``PPO.predict``): batching, action masks, memory."""

from __future__ import annotations

import numpy as np

from ppokit.errors import InputError
from ppokit.gym.envs.action_masks import first_without_valid_action, logit_bounds
from ppokit.gym.envs.spaces import ACTION_MASK_KEY


def predict_actions(policy, rng: np.random.Generator, masks_mode: str, observation, state=None, episode_start=None,
                    deterministic: bool = False, action_mask=None):
    """Actions for one observation or a batch of them, in the env's format; a recurrent policy's come with its next state
    (see ``PPO.predict``). ``masks_mode``: the config's ``action_masks`` ('off': an observation's mask key is not read)."""
    single = is_single(policy, observation)
    batch = np.asarray(observation)[None] if single and not isinstance(observation, (dict, tuple)) else observation
    obs = policy.prepare(batch)
    mask = predict_mask(policy, masks_mode, observation, action_mask, len(obs))
    if policy.recurrent:
        state = recurrent_state(policy, state, episode_start, len(obs))
    actions, next_state = policy.act(obs, rng, deterministic, action_mask=mask, state=state)
    env_actions = policy.actions_to_env(actions)
    env_actions = env_actions[0] if single else env_actions
    if policy.recurrent:
        return env_actions, (next_state[0] if single else next_state)
    return env_actions


def is_single(policy, observation) -> bool:
    """Whether ``observation`` is one observation rather than a batch of them."""
    encoder = getattr(policy, "encoder", None)
    if encoder is not None and encoder.multi:
        return encoder.is_single(observation)
    return np.asarray(observation).shape == policy.observation_space.shape


def recurrent_state(policy, state, episode_start, rows: int) -> np.ndarray:
    """The memory to act from: the caller's (zeroed where an episode has just begun), or a fresh one for None."""
    state = policy.initial_state(rows) if state is None else np.array(state, dtype=np.float32).reshape(rows, -1)
    if state.shape[1] != policy.state_size:
        raise InputError(f"state has {state.shape[1]} values per copy; this policy's memory has {policy.state_size} "
                         f"(pass what the previous predict() returned, or None)")
    if episode_start is not None:
        state[np.asarray(episode_start, dtype=bool).reshape(rows)] = 0.0
    return state


def predict_mask(policy, masks_mode: str, observation, action_mask, rows: int) -> np.ndarray | None:
    """The caller's action mask, or the observation's ``action_mask`` key, checked against the action space."""
    if action_mask is None and masks_mode != "off" and isinstance(observation, dict) and ACTION_MASK_KEY in observation:
        action_mask = observation[ACTION_MASK_KEY]
    if action_mask is None:
        return None
    dist = policy.dist
    if not getattr(dist, "supports_masks", False):
        raise InputError(f"action_mask applies to Discrete and MultiDiscrete actions; this model's are {policy.action_space}")
    try:
        mask = np.asarray(action_mask).astype(bool).reshape(rows, dist.param_size)
    except ValueError:
        raise InputError(f"action_mask has shape {np.shape(action_mask)}; expected {dist.param_size} entries per observation "
                         f"(one per action of {policy.action_space}), for {rows} observation(s)") from None
    bad = first_without_valid_action(mask, logit_bounds(dist))
    if bad is not None:
        raise InputError(f"action_mask of observation {bad} allows no action: {mask[bad].astype(int).tolist()}; expected at least one valid action")
    return mask
