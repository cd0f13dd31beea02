"""What a value model costs: ppokit's `gae` against `grpo` with every other setting the same (bench_lm_real.py's GRPO
settings: 8 prompts x 4 samples per update, one epoch, no KL), on SmolLM2-135M-Instruct, each in a fresh process.

    python benchmarks/lm/value_model_cost.py [--updates 4] [--seeds 0 1 2]

Prints and writes benchmarks/results/lm_value_model_cost.md: seconds per update (scoring + update, from the time/*
columns, generation apart) and the peak RSS of each run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = HERE.parent.parent / "models" / "smollm2-135m-instruct"


def one_run(estimator: str, updates: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(2)
    from ppokit.lm.config import LMPPOConfig
    from ppokit.lm.instruction_task import instruction_reward, make_prompts
    from ppokit.lm.ppo import LMPPOTrainer

    config = LMPPOConfig.from_dict({"policy": str(MODEL), "advantage_estimator": estimator, "samples_per_prompt": 4, "batch_size": 32,
                                    "minibatch_size": 16, "n_epochs": 1, "kl_coef": 0.0, "max_new_tokens": 32, "learning_rate": 2e-5,
                                    "missing_eos_penalty": None, "total_episodes": 32 * updates, "torch_threads": 2, "tensorboard": False, "seed": seed})
    trainer = LMPPOTrainer(config, reward=instruction_reward, prompts=make_prompts(512, seed=1), progress=False, verbose=False)
    trainer.train()
    rows = [row for row in trainer.history if "time/update" in row]
    return {"estimator": estimator, "seed": seed, "generate": [r["time/generate"] for r in rows], "score": [r["time/score"] for r in rows],
            "update": [r["time/update"] for r in rows], "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--run", nargs=3, metavar=("ESTIMATOR", "UPDATES", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(one_run(args.run[0], int(args.run[1]), int(args.run[2]))))
        return
    runs = []
    for seed in args.seeds:
        for estimator in (["gae", "grpo"] if seed % 2 == 0 else ["grpo", "gae"]):
            result = subprocess.run([sys.executable, __file__, "--run", estimator, str(args.updates), str(seed)], capture_output=True, text=True,
                                    check=True, env={"OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
            runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    lines = ["# What a value model costs: ppokit's gae against grpo, the same settings otherwise", "",
             f"`python benchmarks/lm/value_model_cost.py --updates {args.updates} --seeds {' '.join(map(str, args.seeds))}`: SmolLM2-135M-Instruct, "
             "8 prompts x 4 samples per update, one epoch, no KL, float32, 2 threads; medians over seeds of each run's median update.", "",
             "| estimator | scoring s/update | update s/update | scoring + update | peak RSS (MiB) |", "|---|---|---|---|---|"]
    for estimator in ("gae", "grpo"):
        chosen = [r for r in runs if r["estimator"] == estimator]
        score = statistics.median(statistics.median(r["score"]) for r in chosen)
        update = statistics.median(statistics.median(r["update"]) for r in chosen)
        rss = statistics.median(r["peak_rss_mib"] for r in chosen)
        lines.append(f"| {estimator} | {score:.1f} | {update:.1f} | {score + update:.1f} | {rss:,.0f} |")
    text = "\n".join(lines) + "\n"
    (HERE.parent / "results" / "lm_value_model_cost.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
