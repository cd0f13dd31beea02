"""One GRPO run with TRL's GRPOTrainer (the newest trl, in a venv of its own), run by bench_lm_real.py.

Usage: python run_trl_grpo.py SETTINGS.json OUT.json. Reads the shared settings (model, prompt files, the reward's
module, hyperparameters), trains, saves the policy to settings["output_dir"] and writes to OUT.json the timing
(generation, reward, the rest), the peak RSS and the mean reward of every optimizer step's completions.
"""

import importlib
import json
import resource
import sys
import time

import torch


def main(settings_path: str, out_path: str) -> None:
    settings = json.load(open(settings_path))
    torch.set_num_threads(settings["threads"])
    sys.path.insert(0, settings["reward_path"])  # the reward function is ppokit's task module, imported from its source
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    reward_module, reward_name = settings["reward"].split(":")
    score = getattr(importlib.import_module(reward_module), reward_name)
    h = settings["hyperparameters"]
    timings = {"generate": 0.0, "score": 0.0}
    rewards: list[float] = []
    tokens = [0]

    def reward(prompts, completions, completion_ids=None, **kwargs):
        started = time.perf_counter()
        values = [score(prompt, completion[0]["content"]) for prompt, completion in zip(prompts, completions)]
        timings["score"] += time.perf_counter() - started
        rewards.extend(values)
        tokens[0] += sum(len(ids) for ids in completion_ids or [])
        return values

    tokenizer = AutoTokenizer.from_pretrained(settings["model"])
    model = AutoModelForCausalLM.from_pretrained(settings["model"], dtype=torch.float32)
    generate = model.generate

    def timed_generate(*args, **kwargs):
        started = time.perf_counter()
        output = generate(*args, **kwargs)
        timings["generate"] += time.perf_counter() - started
        return output

    model.generate = timed_generate
    prompts = [json.loads(line)["messages"] for line in open(settings["prompts"])]
    batch, minibatch = h["batch_size"], h["minibatch_size"]
    updates = h["total_episodes"] // batch
    config = GRPOConfig(
        output_dir=settings["output_dir"], report_to="none", seed=settings["seed"], use_cpu=True, bf16=False,
        num_generations=h["samples_per_prompt"], per_device_train_batch_size=minibatch, steps_per_generation=batch // minibatch,
        gradient_accumulation_steps=1, num_iterations=h["n_epochs"], max_steps=updates * (batch // minibatch),
        max_completion_length=h["max_new_tokens"], temperature=h["temperature"], learning_rate=h["learning_rate"], lr_scheduler_type="constant",
        adam_epsilon=h["adam_eps"], max_grad_norm=h["max_grad_norm"], beta=h["kl_coef"], epsilon=h["clip_range"],
        loss_type="dapo", scale_rewards="group",  # the token mean over the minibatch and GRPO's group std: ppokit's token-mean and grpo
        gradient_checkpointing=False, save_strategy="no", logging_steps=1000, disable_dropout=True,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=Dataset.from_dict({"prompt": prompts}),
                          processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.save_model(settings["output_dir"])
    tokenizer.save_pretrained(settings["output_dir"])
    episodes = len(rewards)
    curve = [sum(rewards[i : i + batch]) / batch for i in range(0, episodes, batch)]
    json.dump({"library": f"trl {importlib.import_module('trl').__version__}", "episodes": episodes, "train_seconds": seconds,
               "episodes_per_second": episodes / seconds, "generated_tokens": tokens[0], "tokens_per_second": tokens[0] / seconds,
               "time_generate": timings["generate"], "time_score": timings["score"],
               "time_update": seconds - timings["generate"] - timings["score"], "reward_curve": curve,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
