"""Peak memory and speed of `ppokit lm ppo` on the 87M GPT-2 at each precision, with and without gradient checkpointing.

Each configuration runs PPO in a fresh process (policy, frozen reference, value model and reward model,
all 87M parameters; prompts of 32 tokens, responses of max_new_tokens) and reports episodes/s,
response tokens/s and peak memory: the process's peak RSS, and on CUDA torch.cuda.max_memory_allocated.

    python benchmarks/bench_lm_memory.py                       # CPU, the six configurations (make bench-lm-memory)
    python benchmarks/bench_lm_memory.py --device cuda         # on a GPU (benchmarks/gpu_check.py runs this)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE / "lm"))
CONFIGS = [("fp32", False), ("fp32", True), ("bf16-mixed", False), ("bf16-mixed", True), ("bf16", False), ("bf16", True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=None, help="only these precisions (default: fp32 bf16-mixed bf16)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads per run (CPU)")
    parser.add_argument("--work-dir", default="/tmp/ppokit-bench-lm-memory")
    parser.add_argument("--report", default="lm_memory", help="file stem under benchmarks/results/")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration given as JSON, print its result
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(**json.loads(args.one))))
        return
    runs = measure(args.device, [c for c in CONFIGS if args.precisions is None or c[0] in args.precisions], args.batch_size,
                   args.max_new_tokens, args.updates, args.threads, Path(args.work_dir))
    write_report(runs, args)


def measure(device: str, configs, batch_size: int, max_new_tokens: int, updates: int, threads: int, work_dir: Path) -> list[dict]:
    """Run each (precision, checkpointing) in its own process; returns their results."""
    import gpt2_87m

    paths = gpt2_87m.build(work_dir / "models")
    runs = []
    for precision, checkpointing in configs:
        case = {"paths": paths, "device": device, "precision": precision, "gradient_checkpointing": checkpointing, "batch_size": batch_size,
                "max_new_tokens": max_new_tokens, "updates": updates, "threads": threads}
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
        output = subprocess.run([sys.executable, __file__, "--one", json.dumps(case)], check=True, capture_output=True, text=True, env=env).stdout
        result = json.loads(output.strip().splitlines()[-1])
        runs.append(result)
        print(f"{precision:10s} checkpointing={str(checkpointing):5s}: {result['episodes_per_second']:.2f} episodes/s, "
              f"{result['tokens_per_second']:.1f} tokens/s, peak RSS {result['peak_rss_mib']:,.0f} MiB"
              + (f", CUDA peak {result['cuda_max_allocated_mib']:,.0f} MiB" if "cuda_max_allocated_mib" in result else ""), flush=True)
    return runs


def run_case(paths: dict, device: str, precision: str, gradient_checkpointing: bool, batch_size: int, max_new_tokens: int, updates: int,
             threads: int) -> dict:
    """One PPO run in this process; peak memory covers loading the four models too."""
    import torch

    torch.set_num_threads(threads)
    from ppokit.lm.config import LMPPOConfig
    from ppokit.lm.device import peak_memory
    from ppokit.lm.ppo import LMPPOTrainer

    config = LMPPOConfig.from_dict({"policy": paths["policy"], "reward_model": paths["reward_model"], "prompts": paths["prompts"],
                                    "batch_size": batch_size, "minibatch_size": batch_size, "n_epochs": 1, "total_episodes": batch_size * updates,
                                    "max_new_tokens": max_new_tokens, "device": device, "precision": precision,
                                    "gradient_checkpointing": gradient_checkpointing, "tensorboard": False})
    trainer = LMPPOTrainer(config, progress=False, verbose=False)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    return {"precision": precision, "gradient_checkpointing": gradient_checkpointing, "device": str(trainer.device),
            "episodes": result["episodes"], "seconds": seconds, "episodes_per_second": result["episodes"] / seconds,
            "tokens_per_second": trainer.tokens / seconds, "response_tokens": trainer.tokens, **peak_memory(trainer.device)}


def write_report(runs: list[dict], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import gpt2_87m
    import matplotlib.pyplot as plt

    RESULTS.mkdir(exist_ok=True)
    parameters = gpt2_87m.parameter_count(str(Path(args.work_dir) / "models" / "policy"))
    cuda = any("cuda_max_allocated_mib" in r for r in runs)
    lines = [
        f"# ppokit lm ppo, {parameters / 1e6:.1f}M-parameter GPT-2: memory and speed by precision",
        "",
        f"Command: `python benchmarks/bench_lm_memory.py --device {args.device} --batch-size {args.batch_size} --max-new-tokens {args.max_new_tokens} "
        f"--updates {args.updates} --threads {args.threads}`, {time.strftime('%Y-%m-%d')}, device {runs[0]['device'] if runs else args.device}.",
        "",
        f"Policy, frozen reference, value model and reward model are each GPT-2 12 x 768 ({parameters:,} parameters); "
        f"batch_size = minibatch_size = {args.batch_size}, one epoch, {args.updates} updates, prompts of 32 tokens, "
        f"responses of {args.max_new_tokens} tokens. Each row is a fresh process; peak memory includes loading the models.",
        "",
        "| precision | gradient checkpointing | episodes/s | response tokens/s | peak RSS (MiB) |" + (" CUDA max allocated (MiB) |" if cuda else ""),
        "|---|---|---|---|---|" + ("---|" if cuda else ""),
    ]
    for r in runs:
        lines.append(f"| {r['precision']} | {'on' if r['gradient_checkpointing'] else 'off'} | {r['episodes_per_second']:.2f} | "
                     f"{r['tokens_per_second']:.1f} | {r['peak_rss_mib']:,.0f} |"
                     + (f" {r.get('cuda_max_allocated_mib', float('nan')):,.0f} |" if cuda else ""))
    (RESULTS / f"{args.report}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{args.report}.json").write_text(json.dumps({"runs": runs, "parameters": parameters, "args": vars(args)}, indent=1) + "\n")

    fig, (memory, speed) = plt.subplots(1, 2, figsize=(10, 3.8))
    labels = [f"{r['precision']}\n{'ckpt' if r['gradient_checkpointing'] else 'no ckpt'}" for r in runs]
    key = "cuda_max_allocated_mib" if cuda else "peak_rss_mib"
    memory.bar(labels, [r[key] for r in runs], color="#1f77b4")
    memory.set_title("CUDA max allocated (MiB)" if cuda else "peak RSS (MiB)")
    speed.bar(labels, [r["tokens_per_second"] for r in runs], color="#ff7f0e")
    speed.set_title("response tokens per second")
    for axis in (memory, speed):
        axis.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"ppokit lm ppo, {parameters / 1e6:.0f}M GPT-2 on {runs[0]['device'] if runs else args.device}")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.report}.png", dpi=100)
    print((RESULTS / f"{args.report}.md").read_text())
    if runs:
        print(f"median tokens/s over the configurations: {statistics.median(r['tokens_per_second'] for r in runs):.1f}")


if __name__ == "__main__":
    main()
