"""Steps per second and peak memory against the number of envs (1 to 64), ppokit and Stable-Baselines3.

Every point is one training run in a fresh process (benchmarks/run_one.py) on CartPole-v1 with the
CartPole-v1 preset, changed only in ``n_envs`` and, where one rollout is smaller than the preset's 256,
in ``minibatch_size`` (the whole rollout then). Both libraries get exactly the same settings; the
libraries alternate at each point. Peak memory is the process's maximum resident set size.
Writes benchmarks/results/scaling.md and scaling.png.

    python benchmarks/bench_scaling.py [--n-envs 1 2 4 8 16 32 64] [--total-steps 16384]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench_sb3 import RESULTS, fmt, run

ENV = "CartPole-v1"
N_STEPS = 32  # the preset's steps per env per rollout
MINIBATCH = 256  # the preset's minibatch
# ppokit: its default (gymnasium's numpy-vectorized CartPole) and the same per-copy envs as SB3's
LIBS = {"ppokit": "ppokit (numpy-vectorized env)", "ppokit-sync": "ppokit (per-copy envs, as SB3)", "sb3": "Stable-Baselines3"}


def measure(n_envs_list: list[int], total_steps: int, seed: int, raw: Path) -> dict[str, dict[int, dict]]:
    results: dict[str, dict[int, dict]] = {lib: {} for lib in LIBS}
    for i, n_envs in enumerate(n_envs_list):
        settings = [f"n_envs={n_envs}", f"minibatch_size={min(MINIBATCH, n_envs * N_STEPS)}"]
        for lib in (list(LIBS) if i % 2 == 0 else list(LIBS)[::-1]):
            results[lib][n_envs] = run(lib, ENV, seed, raw, total_steps=total_steps, name=f"scaling-{n_envs}envs",
                                       extra=["--no-eval", "--set", *settings])
    return results


def write_table(results: dict, total_steps: int, path: Path) -> None:
    n_envs_list = sorted(next(iter(results.values())))
    lines = [
        "# Steps per second and peak memory against the number of envs",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/bench_scaling.py`. CartPole-v1 preset "
        f"({N_STEPS} steps per env per rollout, 20 epochs, minibatch min(256, rollout)), {total_steps:,} steps per run,",
        "one fresh process per point, one torch thread, the libraries alternating. SPS = env steps / training seconds;",
        "peak RSS = the process's maximum resident set size, imports included.",
        "",
        "| n_envs | " + " | ".join(f"{lib} SPS" for lib in results) + " | ppokit / SB3 SPS | "
        + " | ".join(f"{lib} peak RSS MB" for lib in results) + " |",
        "|" + "---|" * (2 * len(results) + 2),
    ]
    for n in n_envs_list:
        sps = {lib: results[lib][n]["sps"] for lib in results}
        rss = {lib: results[lib][n]["peak_rss_mb"] for lib in results}
        lines.append(f"| {n} | " + " | ".join(fmt(v) for v in sps.values()) + f" | {sps['ppokit'] / sps['sb3']:.1f}x | "
                     + " | ".join(fmt(v) for v in rss.values()) + " |")
    path.write_text("\n".join(lines) + "\n")


def write_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_sps, ax_rss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for lib, by_n in results.items():
        n_envs = sorted(by_n)
        ax_sps.plot(n_envs, [by_n[n]["sps"] for n in n_envs], marker="o", label=LIBS[lib])
        ax_rss.plot(n_envs, [by_n[n]["peak_rss_mb"] for n in n_envs], marker="o", label=LIBS[lib])
    for ax, label in ((ax_sps, "env steps per second while training"), (ax_rss, "peak RSS (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(n_envs, [str(n) for n in n_envs])
        ax.set_xlabel("number of envs")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_sps.set_yscale("log")
    ax_rss.set_ylim(bottom=0)
    fig.suptitle(f"{ENV}: scaling with the number of envs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-envs", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--total-steps", type=int, default=16_384)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    raw = RESULTS / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    results = measure(args.n_envs, args.total_steps, args.seed, raw)
    write_table(results, args.total_steps, RESULTS / "scaling.md")
    write_plot(results, RESULTS / "scaling.png")
    print((RESULTS / "scaling.md").read_text())


if __name__ == "__main__":
    main()
