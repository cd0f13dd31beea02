"""Episodes/s on SmolLM2-135M-Instruct before and after the real-model speed-ups, side by side in one run.

``gae`` (PPO with a value model, the only estimator before the PPO family): the code at a git revision from before
the speed-ups (default 59647f2, where ppokit stood when the real model was first tried) against the working tree,
at bench_lm_real.py's gae settings. ``grpo``: the working tree with ``share_prompt_pass`` off against on (the one
speed-up that a key switches), at bench_lm_real.py's grpo settings. Each run is a fresh process; the two sides
alternate; episodes/s is the training loop's (model loading left out). Medians over the seeds go to
``results/lm_speedups.md``.

Usage: python benchmarks/lm/speedups_real.py [--before REV] [--seeds 0 1 2] [--updates 2]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/revisions.py
from revisions import REPO, revision_tree, run_sides, write_comparison  # noqa: E402

MODEL = REPO / "models" / "smollm2-135m-instruct"
# a file path, not a module: the 'before' tree has no ppokit.lm.instruction_task
REWARD = f"{REPO / 'src' / 'ppokit' / 'lm' / 'instruction_task.py'}:instruction_reward"
SHARED = {"max_new_tokens": 32, "temperature": 1.0, "learning_rate": 2e-5, "adam_eps": 1e-5, "max_grad_norm": 1.0, "clip_range": 0.2,
          "missing_eos_penalty": None, "torch_threads": 2, "tensorboard": False, "log_interval": 1000}
SETTINGS = {
    "gae": SHARED | {"batch_size": 16, "minibatch_size": 8, "n_epochs": 2, "kl_coef": 0.05, "clip_range_vf": 0.2, "vf_coef": 0.1,
                     "gamma": 1.0, "gae_lambda": 0.95},
    "grpo": SHARED | {"advantage_estimator": "grpo", "samples_per_prompt": 4, "kl_penalty": "loss", "batch_size": 32, "minibatch_size": 16,
                      "n_epochs": 1, "kl_coef": 0.0},
}


def one_run(values_path: str, out_path: str) -> None:
    """In a fresh process: train from the config values in VALUES_PATH and write the loop's episodes/s to OUT_PATH."""
    import torch

    torch.set_num_threads(2)
    from ppokit.lm.config import LMPPOConfig
    from ppokit.lm.ppo import LMPPOTrainer

    trainer = LMPPOTrainer(LMPPOConfig.from_dict(json.loads(Path(values_path).read_text())), run_dir=None, progress=False, verbose=False)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    Path(out_path).write_text(json.dumps({"episodes": result["episodes"], "seconds": seconds, "episodes_per_second": result["episodes"] / seconds}))


def measure(src: Path, values: dict, folder: Path, name: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.values.json").write_text(json.dumps(values))
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, __file__, "--one", str(folder / f"{name}.values.json"), str(folder / f"{name}.json")], check=True, env=env)
    return json.loads((folder / f"{name}.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="59647f2", help="git revision from before the speed-ups (gae)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=2, help="updates per run")
    parser.add_argument("--one", nargs=2, metavar=("VALUES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one_run(*args.one)
    prompts = REPO / "benchmarks" / "results" / "raw" / "lm_real" / "prompts.jsonl"
    work = Path(tempfile.mkdtemp(prefix="ppokit-speedups-"))
    with revision_tree(args.before, work / "before") as before_src:
        # estimator -> its two sides: (label, source tree, extra values)
        sides = {"gae": [(f"before ({args.before})", before_src, {}), ("after", REPO / "src", {})],
                 "grpo": [("share_prompt_pass false", REPO / "src", {"share_prompt_pass": False}), ("share_prompt_pass true", REPO / "src", {})]}

        def episodes_per_second(estimator: str, seed: int, side: tuple) -> float:
            label, src, extra = side
            values = SETTINGS[estimator] | extra | {"policy": str(MODEL), "prompts": str(prompts), "reward_function": [REWARD], "seed": seed,
                                                   "total_episodes": args.updates * SETTINGS[estimator]["batch_size"]}
            name = f"{label.split()[0]}-{extra.get('share_prompt_pass', 'on')}-seed{seed}"
            return measure(src, values, work / estimator, name)["episodes_per_second"]

        results = run_sides(sides, args.seeds, episodes_per_second, "episodes/s")
    write_report(results, args)


def write_report(results: dict, args) -> None:
    write_comparison(REPO / "benchmarks" / "results" / "lm_speedups.md", "Episodes/s on SmolLM2-135M-Instruct before and after the speed-ups",
                     f"python benchmarks/lm/speedups_real.py --before {args.before} --updates {args.updates}", args.seeds,
                     f"{args.updates} updates per run, fresh processes, sides alternating, 2 torch threads, float32, CPU",
                     ("estimator", "code", "episodes/s"), results, (".3f", ".2f"))


if __name__ == "__main__":
    main()
