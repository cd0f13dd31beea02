"""GPU readiness of ppokit.lm: the sort demo, the real-model demo (SmolLM2-135M-Instruct, GRPO) and the 87M benchmark on
CUDA with bf16-mixed precision.

Prints episodes/s, response tokens/s and peak memory (torch.cuda.max_memory_allocated) of each and
writes benchmarks/results/gpu_check.md; without a CUDA GPU it says so and exits with status 1.

    python benchmarks/gpu_check.py            # make gpu-check
    python benchmarks/gpu_check.py --device cuda:1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--work-dir", default="/tmp/ppokit-gpu-check")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print(f"ppokit gpu-check: no CUDA GPU is visible to torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none, a CPU-only wheel'}); "
              "nothing was measured. Run it on a machine with an NVIDIA GPU and a CUDA build of torch.", file=sys.stderr)
        return 1
    from ppokit.lm.demo import run_demo
    from ppokit.lm.device import resolve_device

    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device)
    print(f"ppokit gpu-check on {device} ({name}), precision {args.precision}", flush=True)
    work = Path(args.work_dir)

    # 1. the sort demo end to end (SFT, reward model, PPO) on the GPU
    torch.cuda.reset_peak_memory_stats(device)
    placement = {"device": args.device, "precision": args.precision}
    started = time.perf_counter()
    demo = run_demo("sort", work / "demo", seed=0, overrides={"sft": placement, "reward_model": placement, "ppo": placement},
                    progress=False, verbose=False)
    last = _rows(work / "demo" / "ppo" / "progress.csv")[-1]
    sort_row = {"what": "sort demo (PPO stage)", "episodes_per_second": last["charts/episodes_per_second"],
                "tokens_per_second": last["charts/tokens_per_second"], "cuda_max_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20,
                "detail": f"gold {demo['gold_before']:.3f} -> {demo['gold_after']:.3f}, KL {demo['kl']:.3f}, whole demo {time.perf_counter() - started:.0f} s"}
    _print(sort_row)

    # 2. the real-model demo: GRPO on SmolLM2-135M-Instruct (built offline by lm/real_model.py), the same command as on the CPU
    import subprocess

    from ppokit.lm.real_demo import DEFAULT_MODEL, run_real_demo

    model = HERE.parent / DEFAULT_MODEL
    subprocess.run([sys.executable, str(HERE / "lm" / "real_model.py"), str(model)], check=True)
    torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    real = run_real_demo(work / "instructions", model, seed=0, overrides=placement, progress=False, say=lambda *a, **k: None)
    before, after = real["held_out_before"], real["held_out_after"]
    real_row = {"what": "instructions demo (SmolLM2-135M, GRPO)", "episodes_per_second": real["episodes_per_second"],
                "tokens_per_second": float("nan"), "cuda_max_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20,
                "detail": f"held-out greedy score {before['score']:.3f} -> {after['score']:.3f}, pass@4 {before['pass@4']:.3f} -> {after['pass@4']:.3f}, "
                          f"whole demo {time.perf_counter() - started:.0f} s"}
    _print(real_row)

    # 3. the 87M model, with and without gradient checkpointing (fresh processes, as in bench_lm_memory.py)
    from bench_lm_memory import measure

    rows = [sort_row, real_row]
    for run in measure(args.device, [(args.precision, False), (args.precision, True)], batch_size=16, max_new_tokens=64, updates=2,
                       threads=os.cpu_count(), work_dir=work / "memory"):
        rows.append({"what": f"87M GPT-2, checkpointing {'on' if run['gradient_checkpointing'] else 'off'}", **run,
                     "detail": f"peak RSS {run['peak_rss_mib']:,.0f} MiB"})
        _print(rows[-1])

    RESULTS.mkdir(exist_ok=True)
    lines = [f"# ppokit gpu-check: {name} ({device}), precision {args.precision}", "",
             f"Command: `python benchmarks/gpu_check.py --device {args.device} --precision {args.precision}`, {time.strftime('%Y-%m-%d')}, "
             f"torch {torch.__version__}, CUDA {torch.version.cuda}.", "",
             "| run | episodes/s | response tokens/s | CUDA max allocated (MiB) | notes |", "|---|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['episodes_per_second']:.1f} | {r['tokens_per_second']:.0f} | {r['cuda_max_allocated_mib']:,.0f} | {r['detail']} |"
              for r in rows]
    (RESULTS / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print(f"written to {RESULTS / 'gpu_check.md'}")
    return 0


def _rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(f)]


def _print(row: dict) -> None:
    print(f"{row['what']:40s} {row['episodes_per_second']:8.1f} episodes/s {row['tokens_per_second']:9.0f} tokens/s "
          f"{row['cuda_max_allocated_mib']:9,.0f} MiB CUDA peak   {row['detail']}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
