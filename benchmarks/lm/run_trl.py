"""One PPO run with trl==1.12.0 (trl.experimental.ppo), run in its own venv by bench_trl.py.

Usage: python run_trl.py SETTINGS.json OUT.json. Reads the shared settings (models, prompts,
hyperparameters), trains, saves the policy to settings["output_dir"] and writes timing to OUT.json.
"""

import json
import resource
import sys
import time

import torch


def main(settings_path: str, out_path: str) -> None:
    settings = json.load(open(settings_path))
    torch.set_num_threads(settings["threads"])
    torch.manual_seed(settings["seed"])
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(settings["sft_dir"], padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(settings["sft_dir"])
    reference = AutoModelForCausalLM.from_pretrained(settings["sft_dir"])
    value_model = AutoModelForSequenceClassification.from_pretrained(settings["rm_dir"], num_labels=1)
    reward_model = AutoModelForSequenceClassification.from_pretrained(settings["rm_dir"], num_labels=1)
    prompts = [json.loads(line)["prompt"] for line in open(settings["prompts"])]
    dataset = Dataset.from_dict({"input_ids": [tokenizer(p)["input_ids"] for p in prompts]})
    h = settings["hyperparameters"]
    options = {"whiten_rewards": False, **settings.get("trl_options", {})}  # trl's default: raw scores
    config = PPOConfig(
        output_dir=settings["output_dir"], report_to="none", seed=settings["seed"], use_cpu=True,
        per_device_train_batch_size=h["batch_size"], gradient_accumulation_steps=1,
        num_mini_batches=h["batch_size"] // h["minibatch_size"], num_ppo_epochs=h["n_epochs"],
        total_episodes=h["total_episodes"], response_length=h["max_new_tokens"], stop_token="eos",
        temperature=h["temperature"], missing_eos_penalty=h["missing_eos_penalty"], kl_coef=h["kl_coef"], kl_estimator="k1",
        learning_rate=h["learning_rate"], lr_scheduler_type="constant", adam_epsilon=h["adam_eps"],
        cliprange=h["clip_range"], cliprange_value=h["clip_range_vf"],
        vf_coef=2 * h["vf_coef"],  # trl halves the squared error, ppokit's value loss does not
        gamma=h["gamma"], lam=h["gae_lambda"], max_grad_norm=h["max_grad_norm"],
        local_rollout_forward_batch_size=h["batch_size"], num_sample_generations=0, save_strategy="no",
        logging_steps=1000, dataloader_drop_last=True, sft_model_path=settings["sft_dir"], reward_model_path=settings["rm_dir"],
        **options,
    )
    trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy, ref_model=reference, reward_model=reward_model,
                         train_dataset=dataset, value_model=value_model)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.save_model(settings["output_dir"])
    tokenizer.save_pretrained(settings["output_dir"])
    episodes = config.num_total_batches * config.batch_size
    # trl samples every response to response_length tokens and cuts it at EOS afterwards
    tokens = episodes * config.response_length
    json.dump({"library": "trl 1.12.0", "episodes": episodes, "train_seconds": seconds, "episodes_per_second": episodes / seconds,
               "generated_tokens": tokens, "tokens_per_second": tokens / seconds,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
