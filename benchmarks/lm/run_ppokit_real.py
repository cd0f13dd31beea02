"""One ppokit run on the real chat model from the same settings file as run_trl_grpo.py / run_trl_ppo_real.py
(bench_lm_real.py runs them): ``settings["estimator"]`` is 'grpo' or 'gae'. Writes the timing (generation, scoring,
update from progress.csv's time/* columns), the peak RSS and the mean reward of every update to OUT.json.

Usage: python run_ppokit_real.py SETTINGS.json OUT.json
"""

import json
import resource
import sys
import time

import torch


def main(settings_path: str, out_path: str) -> None:
    settings = json.load(open(settings_path))
    torch.set_num_threads(settings["threads"])
    from ppokit.lm.config import LMPPOConfig
    from ppokit.lm.ppo import LMPPOTrainer

    h = settings["hyperparameters"]
    values = {"policy": settings["model"], "prompts": settings["prompts"], "reward_function": [settings["reward"]], "seed": settings["seed"],
              "advantage_estimator": settings["estimator"], "torch_threads": settings["threads"], "tensorboard": False, "log_interval": 1000,
              **{key: h[key] for key in ("batch_size", "minibatch_size", "n_epochs", "total_episodes", "max_new_tokens", "temperature",
                                         "missing_eos_penalty", "kl_coef", "learning_rate", "adam_eps", "clip_range", "max_grad_norm")},
              **settings.get("ppokit_options", {})}
    if settings["estimator"] == "grpo":
        values |= {"samples_per_prompt": h["samples_per_prompt"], "kl_penalty": "loss"}
    else:
        values |= {"clip_range_vf": h["clip_range_vf"], "vf_coef": h["vf_coef"], "gamma": h["gamma"], "gae_lambda": h["gae_lambda"]}
    # no run dir: no checkpoints (trl's runs write none either); the logged rows stay in trainer.history
    trainer = LMPPOTrainer(LMPPOConfig.from_dict(values), run_dir=None, progress=False, verbose=False)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    trainer.save(settings["output_dir"])
    rows = [row for row in trainer.history if "env/score" in row]
    split = {name: sum(row[f"time/{name}"] for row in rows) for name in ("generate", "score", "update")}
    json.dump({"library": "ppokit", "episodes": result["episodes"], "train_seconds": seconds, "episodes_per_second": result["episodes"] / seconds,
               "generated_tokens": trainer.tokens, "tokens_per_second": trainer.tokens / seconds,
               **{f"time_{name}": value for name, value in split.items()}, "reward_curve": [row["env/score"] for row in rows],
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
