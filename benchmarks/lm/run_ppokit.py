"""One PPO run with ppokit.lm from the same settings file as run_trl.py (bench_trl.py runs both).

settings["ppokit_options"], if present, overrides LMPPOConfig fields (for side experiments).
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
    config = LMPPOConfig.from_dict({
        "policy": settings["sft_dir"], "reward_model": settings["rm_dir"], "prompts": settings["prompts"], "seed": settings["seed"],
        **{k: h[k] for k in ("batch_size", "minibatch_size", "n_epochs", "total_episodes", "max_new_tokens", "temperature",
                             "missing_eos_penalty", "kl_coef", "learning_rate", "adam_eps", "clip_range", "clip_range_vf",
                             "vf_coef", "gamma", "gae_lambda", "max_grad_norm")},
        # score_normalization "running" is ppokit's default (scores divided by a running std); trl 1.12.0 has no such option
        "kl_estimator": "k1", "score_normalization": "running", "whiten_advantages": True, "tensorboard": False,
        **settings.get("ppokit_options", {}),
    })
    trainer = LMPPOTrainer(config, run_dir=None, progress=False, verbose=False)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    trainer.save(settings["output_dir"])
    json.dump({"library": "ppokit", "episodes": result["episodes"], "train_seconds": seconds, "episodes_per_second": result["episodes"] / seconds,
               "response_tokens": trainer.tokens, "tokens_per_second": trainer.tokens / seconds,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
