"""One PPO run with trl==1.12.0 (trl.experimental.ppo, the last trl with PPO) on the real chat model, run in its own
venv by bench_lm_real.py.

trl's PPO takes a reward *model* and reads padding from the pad id. The chat model's pad is its EOS, which also ends
every turn of the prompt, so the tokenizer gets a pad token of its own (as ppokit does) and the models grow to match;
the task's Python reward is served by a module that decodes each sequence and scores the response after the last
assistant header.

Usage: python run_trl_ppo_real.py SETTINGS.json OUT.json
"""

import importlib
import json
import resource
import sys
import time
from types import SimpleNamespace

import torch


class FunctionRewardModel(torch.nn.Module):
    """A reward 'model' for trl's get_reward: its backbone returns the reward of each sequence as a one-unit hidden state at
    every position, and its score head is the identity."""

    base_model_prefix = "backbone"

    def __init__(self, tokenizer, reward, timings: dict):
        super().__init__()
        self.backbone = _RewardBackbone(tokenizer, reward, timings)
        self.score = torch.nn.Identity()


class _RewardBackbone(torch.nn.Module):
    def __init__(self, tokenizer, reward, timings: dict):
        super().__init__()
        self.tokenizer, self.reward, self.timings = tokenizer, reward, timings
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)  # so that .to(device) and parameters() work

    def forward(self, input_ids, attention_mask, **kwargs):
        started = time.perf_counter()
        values = []
        for ids, mask in zip(input_ids, attention_mask):
            text = self.tokenizer.decode(ids[mask.bool()].tolist(), skip_special_tokens=False)
            user = text.rsplit("<|im_start|>user\n", 1)[-1].split("<|im_end|>", 1)[0]
            response = text.rsplit("<|im_start|>assistant\n", 1)[-1].split("<|im_end|>", 1)[0]
            values.append(self.reward([{"role": "user", "content": user}], response))
        self.timings["score"] += time.perf_counter() - started
        hidden = torch.tensor(values, dtype=torch.float32, device=input_ids.device)[:, None, None].expand(-1, input_ids.shape[1], 1)
        return SimpleNamespace(hidden_states=[hidden])


def main(settings_path: str, out_path: str) -> None:
    settings = json.load(open(settings_path))
    torch.set_num_threads(settings["threads"])
    torch.manual_seed(settings["seed"])
    sys.path.insert(0, settings["reward_path"])
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    module, name = settings["reward"].split(":")
    reward = getattr(importlib.import_module(module), name)
    tokenizer = AutoTokenizer.from_pretrained(settings["model"], padding_side="left")
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    policy, reference = (AutoModelForCausalLM.from_pretrained(settings["model"]) for _ in range(2))
    value_model = AutoModelForSequenceClassification.from_pretrained(settings["model"], num_labels=1)
    for model in (policy, reference, value_model):
        model.resize_token_embeddings(len(tokenizer))
        model.config.pad_token_id = tokenizer.pad_token_id
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    timings = {"generate": 0.0, "score": 0.0}
    generate = policy.generate

    def timed_generate(*args, **kwargs):
        started = time.perf_counter()
        output = generate(*args, **kwargs)
        timings["generate"] += time.perf_counter() - started
        return output

    policy.generate = timed_generate
    prompts = [json.loads(line)["messages"] for line in open(settings["prompts"])]
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    dataset = Dataset.from_dict({"input_ids": [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]})
    h = settings["hyperparameters"]
    config = PPOConfig(
        output_dir=settings["output_dir"], report_to="none", seed=settings["seed"], use_cpu=True, bf16=False,
        per_device_train_batch_size=h["batch_size"], gradient_accumulation_steps=1, num_mini_batches=h["batch_size"] // h["minibatch_size"],
        num_ppo_epochs=h["n_epochs"], total_episodes=h["total_episodes"], response_length=h["max_new_tokens"], stop_token="eos",
        temperature=h["temperature"], missing_eos_penalty=h["missing_eos_penalty"], kl_coef=h["kl_coef"], kl_estimator="k1",
        learning_rate=h["learning_rate"], lr_scheduler_type="constant", adam_epsilon=h["adam_eps"], cliprange=h["clip_range"],
        cliprange_value=h["clip_range_vf"], vf_coef=2 * h["vf_coef"],  # trl halves the squared error, ppokit's value loss does not
        gamma=h["gamma"], lam=h["gae_lambda"], max_grad_norm=h["max_grad_norm"], local_rollout_forward_batch_size=h["batch_size"],
        num_sample_generations=0, save_strategy="no", logging_steps=1, dataloader_drop_last=True, whiten_rewards=False,
    )
    reward_model = FunctionRewardModel(tokenizer, reward, timings)
    trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy, ref_model=reference, reward_model=reward_model, train_dataset=dataset,
                         value_model=value_model)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.save_model(settings["output_dir"])
    tokenizer.save_pretrained(settings["output_dir"])
    episodes = config.num_total_batches * config.batch_size
    curve = [row["objective/scores"] for row in trainer.state.log_history if "objective/scores" in row]
    tokens = episodes * config.response_length  # trl samples every response to response_length tokens and cuts it at EOS afterwards
    json.dump({"library": "trl 1.12.0", "episodes": episodes, "train_seconds": seconds, "episodes_per_second": episodes / seconds,
               "generated_tokens": tokens, "tokens_per_second": tokens / seconds, "time_generate": timings["generate"], "time_score": timings["score"],
               "time_update": seconds - timings["generate"] - timings["score"], "reward_curve": curve,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
