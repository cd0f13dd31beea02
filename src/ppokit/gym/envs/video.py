"""Record one evaluation episode of a policy to mp4, from the env's rgb_array rendering (offline:
imageio with the ffmpeg binary that the imageio-ffmpeg wheel ships)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ppokit.errors import EnvError
from ppokit.gym.envs.make import make_env


def record_episode(agent, path: Path, deterministic: bool = True, seed: int | None = None, max_steps: int = 10_000) -> int:
    """Runs one episode and writes it to ``path``; returns the number of frames written."""
    import imageio.v2 as imageio

    try:
        env = make_env(agent.env_source, agent.config.env_kwargs, render_mode="rgb_array")
    except TypeError as exc:
        raise EnvError(f"environment {agent.env_source!r} cannot render rgb_array frames: {exc}") from None
    fps = int(env.metadata.get("render_fps") or 30)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = 0
    try:
        from ppokit.gym.evaluate import PolicyDriver

        obs, infos = env.reset(seed=agent.config.seed + 20_000 if seed is None else seed)
        driver = PolicyDriver(agent, env, infos, deterministic, vectorized=False)
        # macro_block_size=1 keeps the frame size as rendered (no rescaling to multiples of 16)
        with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1) as writer:
            for _ in range(max_steps + 1):
                frame = env.render()
                if not isinstance(frame, np.ndarray):
                    raise EnvError(f"environment {agent.env_source!r} returned no rgb_array frame from render(); it cannot be recorded")
                writer.append_data(frame)
                frames += 1
                obs, _, terminated, truncated, infos = env.step(driver.act(obs, infos))
                if terminated or truncated:
                    writer.append_data(env.render())
                    frames += 1
                    break
    finally:
        env.close()
    return frames
