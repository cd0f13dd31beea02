"""Score a policy folder on the held-out prompts with ppokit's evaluation (greedy and k sampled responses per prompt,
the task's reward), the same code for a policy trained by either library.

Usage: python evaluate_real.py MODEL SETTINGS.json OUT.json
"""

import json
import sys

import torch


def main(model: str, settings_path: str, out_path: str) -> None:
    settings = json.load(open(settings_path))
    torch.set_num_threads(settings["threads"])
    from ppokit.lm.config import LMPPOConfig
    from ppokit.lm.ppo import LMPPOTrainer

    h = settings["hyperparameters"]
    # a trainer only to evaluate: no reference (kl_coef 0), no value model (grpo)
    config = LMPPOConfig.from_dict({"policy": model, "prompts": settings["eval_prompts"], "eval_prompts": settings["eval_prompts"],
                                    "reward_function": [settings["reward"]], "advantage_estimator": "grpo", "samples_per_prompt": 2, "batch_size": 2,
                                    "minibatch_size": 2, "total_episodes": 2, "kl_coef": 0.0, "max_new_tokens": h["max_new_tokens"],
                                    "temperature": h["temperature"], "tensorboard": False, "torch_threads": settings["threads"]})
    trainer = LMPPOTrainer(config, progress=False, verbose=False)
    result = trainer.evaluate(samples=settings["eval_samples"], seed=0)
    json.dump(result, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
