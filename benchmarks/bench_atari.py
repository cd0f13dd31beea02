"""Atari side by side: ppokit's Atari preset against Stable-Baselines3's CnnPolicy at the same settings.

    python benchmarks/bench_atari.py [--env ALE/Breakout-v5] [--frames 1000000] [--seeds 0 1 2]   # needs SB3 (make bench installs it)

Both libraries get the same game (the ALE v5 id with frameskip=1 underneath: sticky actions 0.25, the
full v5 defaults otherwise), the same preprocessing (30 no-ops, frame skip 4 with max-pool, episodic
life, fire reset, 84x84 grayscale, reward sign, 4-frame stack; SB3's AtariWrapper + VecFrameStack),
the Nature CNN, and CleanRL ppo_atari.py's values (8 envs x 128 steps, 4 epochs of 4 minibatches,
lr 2.5e-4 annealed, clip 0.1, value clip 0.1, entropy 0.01, value weight 0.25 on the squared error,
grad norm 0.5), one torch thread each. Each run is a fresh process; the libraries alternate seed by
seed. The return curve is the real score of whole games (all lives, unclipped) during training, as
both libraries log it. Writes ``results/atari.md``, ``results/atari.png`` and ``results/raw/atari/*.json``.
The 10M-frame figure (CleanRL: about 400 on Breakout) is out of reach on 2 cores: about 30 hours of
two runs at this machine's speed; the command for it is ``--frames 10000000``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
RAW = HERE / "results" / "raw" / "atari"
LIBRARIES = ("ppokit", "sb3")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_ppokit(env_id: str, seed: int, steps: int) -> dict:
    from ppokit import PPO

    curve = []
    agent = PPO(env_id, {"seed": seed, "total_steps": steps, "tensorboard": False}, preset="Atari", verbose=False, progress_bar=False)

    def on_update(metrics):
        curve.extend((int(metrics["global_step"]), float(score)) for score, _ in agent.logger.last_episodes)

    started = time.perf_counter()
    agent.learn(callback=on_update)
    return {"seconds": time.perf_counter() - started, "steps": agent.global_step, "curve": curve}


def train_sb3(env_id: str, seed: int, steps: int) -> dict:
    import torch
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from ppokit.gym.envs.atari import register_ale

    register_ale()
    torch.set_num_threads(1)
    curve = []

    class GameScores(BaseCallback):  # SB3's Monitor sits under the life-loss wrapper: whole games, raw score
        def _on_step(self) -> bool:
            curve.extend((int(self.num_timesteps), float(info["episode"]["r"])) for info in self.locals["infos"] if "episode" in info)
            return True

    envs = VecFrameStack(make_atari_env(env_id, n_envs=8, seed=seed, env_kwargs={"frameskip": 1}), n_stack=4)
    model = SB3PPO("CnnPolicy", envs, seed=seed, device="cpu", verbose=0, n_steps=128, batch_size=256, n_epochs=4,
                   learning_rate=lambda remaining: 2.5e-4 * remaining, clip_range=0.1, clip_range_vf=0.1, ent_coef=0.01,
                   vf_coef=0.25, max_grad_norm=0.5, gamma=0.99, gae_lambda=0.95)
    started = time.perf_counter()
    model.learn(total_timesteps=steps, callback=GameScores())
    return {"seconds": time.perf_counter() - started, "steps": int(model.num_timesteps), "curve": curve}


def run_one(library: str, env_id: str, seed: int, steps: int, out: Path) -> None:
    result = (train_ppokit if library == "ppokit" else train_sb3)(env_id, seed, steps)
    scores = [score for _, score in result["curve"]]
    result |= {"library": library, "env_id": env_id, "seed": seed, "sps": result["steps"] / result["seconds"], "peak_rss_mib": peak_rss_mib(),
               "last_100_games": statistics.mean(scores[-100:]) if scores else float("nan"), "games": len(scores)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result))


def report(env_id: str, frames: int, seeds: list[int], command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = {lib: [json.loads((RAW / f"{lib}-{env_id.replace('/', '-')}-{frames}-seed{s}.json").read_text()) for s in seeds] for lib in LIBRARIES}
    lines = [f"# Atari: {env_id}, {frames:,} frames ({frames // 4:,} steps), seeds {', '.join(map(str, seeds))}", "",
             f"Command: `{command}`, {time.strftime('%Y-%m-%d')}, 2-core CPU, one torch thread per run, runs alternating in fresh processes.", "",
             "| library | SPS (median) | peak RSS, MiB (median) | mean score of the last 100 games, per seed | median |", "|---|---|---|---|---|"]
    for lib in LIBRARIES:
        finals = [r["last_100_games"] for r in runs[lib]]
        lines.append(f"| {lib} | {statistics.median(r['sps'] for r in runs[lib]):,.0f} | {statistics.median(r['peak_rss_mib'] for r in runs[lib]):,.0f} | "
                     f"{', '.join(f'{f:.1f}' for f in finals)} | {statistics.median(finals):.1f} |")
    sps_ratio = statistics.median(r["sps"] for r in runs["ppokit"]) / statistics.median(r["sps"] for r in runs["sb3"])
    lines += ["", f"ppokit / SB3 SPS: {sps_ratio:.2f}x."]
    (HERE / "results" / "atari.md").write_text("\n".join(lines) + "\n")
    figure, axis = plt.subplots(figsize=(7, 4))
    grid = np.linspace(0, frames // 4, 50)
    for lib, color in zip(LIBRARIES, ("tab:blue", "tab:orange")):
        curves = []
        for run in runs[lib]:
            steps, scores = np.array([p[0] for p in run["curve"]]), np.array([p[1] for p in run["curve"]])
            smooth = np.array([scores[max(0, i - 99): i + 1].mean() for i in range(len(scores))])  # mean of the last 100 games
            curves.append(np.interp(grid, steps, smooth, left=np.nan))
        curves = np.array(curves)
        axis.plot(grid * 4, np.nanmedian(curves, 0), color=color, label=f"{lib} (median of {len(seeds)})")
        axis.fill_between(grid * 4, np.nanmin(curves, 0), np.nanmax(curves, 0), color=color, alpha=0.2)
    axis.set(xlabel="frames", ylabel="game score (last 100 games)", title=f"{env_id}: ppokit vs Stable-Baselines3")
    axis.legend()
    figure.tight_layout()
    figure.savefig(HERE / "results" / "atari.png", dpi=100)
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="ALE/Breakout-v5")
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--one", nargs=2, metavar=("LIBRARY", "SEED"), help=argparse.SUPPRESS)  # a single run, in its own process
    args = parser.parse_args()
    if args.one:
        library, seed = args.one[0], int(args.one[1])
        run_one(library, args.env, seed, args.frames // 4, RAW / f"{library}-{args.env.replace('/', '-')}-{args.frames}-seed{seed}.json")
        return
    for seed in args.seeds:
        for library in LIBRARIES if seed % 2 == 0 else reversed(LIBRARIES):
            out = RAW / f"{library}-{args.env.replace('/', '-')}-{args.frames}-seed{seed}.json"
            if out.exists():
                continue
            print(f"{library} seed {seed} ...", flush=True)
            subprocess.run([sys.executable, __file__, "--env", args.env, "--frames", str(args.frames), "--one", library, str(seed)], check=True)
    report(args.env, args.frames, args.seeds, "python benchmarks/bench_atari.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
