"""Making vector environments from an env id or a factory, with clear errors for unknown ids."""

from __future__ import annotations

import difflib
from typing import Callable, Union

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from ppokit.errors import EnvError

EnvSource = Union[str, Callable[[], gym.Env]]


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


def make_vector_env(source: EnvSource, n_envs: int, mode: str = "sync", env_kwargs: dict | None = None) -> gym.vector.VectorEnv:
    """Vector env with same-step autoreset, so a finished episode's last observation is in infos['final_obs']."""
    # Build one copy here first: bad ids and bad factories fail in this process with a clear message.
    probe = make_env(source, env_kwargs)
    probe.close()
    factories = [lambda: make_env(source, env_kwargs) for _ in range(n_envs)]
    if mode == "async":
        return gym.vector.AsyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)
    if mode == "sync":
        return gym.vector.SyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)
    raise EnvError(f"unknown vec_env {mode!r}; expected 'sync' or 'async'")
