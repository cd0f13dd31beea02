"""Making vector environments from an env id or a factory, with clear errors for unknown ids."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Union

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from ppokit.errors import EnvError
from ppokit.gym.envs.atari import is_atari_id, make_atari_env, register_ale
from ppokit.gym.envs.envpool_backend import EnvpoolVectorEnv
from ppokit.gym.envs.toy_envs import register_toy_envs

register_toy_envs()  # ppokit/CueRecall-v0 and the other small envs (ppokit.gym.envs.toy_envs)

WHOLE_GAMES = "ppokit_whole_games"
EnvSource = Union[str, Callable[[], gym.Env]]  # noqa: UP007 (a runtime alias: X | Y needs Python 3.10 objects on both sides)


def describe(source: EnvSource) -> str:
    if isinstance(source, str):
        return source
    return getattr(source, "__name__", repr(source))


def check_env_id(env_id: str) -> None:
    """Raise an EnvError naming the id and the closest registered ones if gymnasium does not know it."""
    if ":" in env_id:  # "package.module:EnvName-v0" imports the package, which registers the id
        module, _, _ = env_id.partition(":")
        try:
            __import__(module)
        except ImportError as exc:
            raise EnvError(f"environment id {env_id!r}: cannot import module {module!r} ({exc})") from None
        env_id = env_id.partition(":")[2]
    if is_atari_id(env_id):
        register_ale()  # the ALE ids exist once ale-py registers them
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise EnvError(
        f"unknown environment id {env_id!r}.{hint} Expected an id registered with gymnasium "
        f"(`ppokit envs` lists them) or a factory callable returning a gymnasium.Env."
    )


def make_env(source: EnvSource, env_kwargs: dict | None = None, render_mode: str | None = None) -> gym.Env:
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if isinstance(source, str):
        check_env_id(source)
        try:
            if is_atari_id(source):
                return make_atari_env(source, env_kwargs, render_mode)
            return gym.make(source, **kwargs)
        except gym.error.DependencyNotInstalled as exc:
            raise EnvError(f"environment {source!r} needs a package that is not installed: {exc}") from None
        except TypeError as exc:
            raise EnvError(f"environment {source!r} rejected env_kwargs {kwargs}: {exc}") from None
    if callable(source):
        env = source(**kwargs) if kwargs else source()
        if not isinstance(env, gym.Env):
            raise EnvError(f"env factory {describe(source)} returned {type(env).__name__}, expected a gymnasium.Env")
        return env
    raise EnvError(f"expected an environment id (str) or a factory callable, got {type(source).__name__}")


def has_numpy_vector_env(source: EnvSource) -> bool:
    """Whether gymnasium registers a numpy-vectorized implementation of this id (e.g. CartPole-v1).

    Those step all copies in a few array operations instead of a Python loop over copies; the
    jax-based ones (ids under phys2d/) are left out, as they need jax.
    """
    if not isinstance(source, str) or source not in gym.registry or is_atari_id(source):
        return False  # (ale-py's own vector env has preprocessing of its own: ppokit's Atari chain runs in 'sync' envs)
    entry_point = gym.registry[source].vector_entry_point
    return isinstance(entry_point, str) and not entry_point.startswith("gymnasium.envs.phys2d")


def with_step_limit(env: gym.Env, limit: int | None) -> gym.Env:
    """``env`` ended (truncated) after ``limit`` steps when it has no time limit of its own (CliffWalking-v1, many
    factories), so that a policy which never reaches a terminal state cannot hold an evaluation forever."""
    if limit is None or (env.spec is not None and env.spec.max_episode_steps is not None):
        return env
    return gym.wrappers.TimeLimit(env, limit)


def make_vector_env(source: EnvSource, n_envs: int, mode: str = "sync", env_kwargs: dict | None = None,
                    backend: str = "gymnasium", seed: int = 0, step_limit: int | None = None) -> gym.vector.VectorEnv:
    """A vector env of ``n_envs`` copies from the backend ``env_backend`` names (``ENV_BACKENDS``)."""
    if backend not in ENV_BACKENDS:
        raise EnvError(f"unknown env_backend {backend!r}; expected one of {', '.join(repr(name) for name in ENV_BACKENDS)}")
    envs = ENV_BACKENDS[backend](source, n_envs, mode, env_kwargs, seed, step_limit)
    # Atari's chain ends episodes at a lost life: what the rollout and evaluation report are the games (envs/atari.py)
    envs.metadata = {**getattr(envs, "metadata", {}), WHOLE_GAMES: is_atari_id(source)}
    return envs


def scores_whole_games(envs) -> bool:
    """Whether ``envs`` (from make_vector_env) report finished games through their infos rather than episodes."""
    return bool(getattr(envs, "metadata", {}).get(WHOLE_GAMES))


def gymnasium_vector_env(source: EnvSource, n_envs: int, mode: str, env_kwargs: dict | None, seed: int, step_limit: int | None):
    """gymnasium's vector envs. 'sync' and 'async' use same-step autoreset (a finished episode's last observation is
    in infos['final_obs']); 'vector' is the env's own numpy implementation, which resets on the next step (the
    rollout collector masks that step out); 'auto' picks 'vector' where it exists, else 'sync'. ``step_limit``:
    'sync' and 'async' copies without a time limit of their own end episodes after this many steps. (``seed``:
    the envs are seeded at reset.)"""
    if mode == "auto":
        mode = "vector" if has_numpy_vector_env(source) else "sync"
    # Build one copy here first: bad ids and bad factories fail in this process with a clear message.
    probe = make_env(source, env_kwargs)
    probe.close()
    if mode == "vector":
        if not has_numpy_vector_env(source):
            raise EnvError(f"vec_env 'vector' needs an env id with a numpy vector implementation; {describe(source)!r} has none (use 'sync' or 'async')")
        try:
            return gym.make_vec(source, num_envs=n_envs, vectorization_mode="vector_entry_point", **dict(env_kwargs or {}))
        except TypeError as exc:
            raise EnvError(f"environment {source!r} (vector implementation) rejected env_kwargs {env_kwargs}: {exc}") from None
    factories = [lambda: with_step_limit(make_env(source, env_kwargs), step_limit) for _ in range(n_envs)]
    if mode == "async":
        return gym.vector.AsyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)
    if mode == "sync":
        return gym.vector.SyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)
    raise EnvError(f"unknown vec_env {mode!r}; expected 'auto', 'sync', 'async' or 'vector'")


def envpool_vector_env(source: EnvSource, n_envs: int, mode: str, env_kwargs: dict | None, seed: int, step_limit: int | None):
    """envpool's C++ pool, seeded with ``seed`` (``mode`` and ``step_limit`` do not apply: envpool keeps each id's own limit)."""
    if not isinstance(source, str):
        raise EnvError(f"env_backend 'envpool' needs an env id, not a factory ({describe(source)!r})")
    return EnvpoolVectorEnv(source, n_envs, env_kwargs, seed)


# env_backend -> builder(source, n_envs, vec_env mode, env_kwargs, seed, step_limit); a new backend is one entry
ENV_BACKENDS: dict[str, Callable[..., gym.vector.VectorEnv]] = {"gymnasium": gymnasium_vector_env, "envpool": envpool_vector_env}
