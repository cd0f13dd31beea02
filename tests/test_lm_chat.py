"""Chat rows: message lists rendered with the tokenizer's chat template in SFT (loss on assistant turns
only), the reward model and PPO prompts, with a tokenizer built here (nothing is downloaded)."""

import json

import pytest
import torch

from ppokit.errors import ConfigError
from ppokit.lm.config import LMPPOConfig, RewardModelConfig, SFTConfig
from ppokit.lm.data import load_rows, write_jsonl
from ppokit.lm.models import build_tiny_causal_lm, load_tokenizer, save_pretrained
from ppokit.lm.ppo import LMPPOTrainer
from ppokit.lm.reward_model import RewardModelTrainer
from ppokit.lm.sft import IGNORE, SFTTrainer
from ppokit.lm.tasks import get_task, sort_gold_reward

# the end of a turn is the tokenizer's EOS, as in most chat models (generation stops there)
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <eos> {% endfor %}"
            "{% if add_generation_prompt %}<|assistant|> {% endif %}")
CONVERSATION = [{"role": "system", "content": "="}, {"role": "user", "content": "3 1 2 ="}, {"role": "assistant", "content": "1 2 3"},
                {"role": "user", "content": "9 8 ="}, {"role": "assistant", "content": "8 9"}]


def _chat_tokenizer():
    tokenizer = get_task("sort").build_tokenizer()
    tokenizer.add_tokens(["<|system|>", "<|user|>", "<|assistant|>"])
    tokenizer.chat_template = TEMPLATE
    return tokenizer


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False).input_ids


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """A tiny model with the chat tokenizer, saved like a user's chat model."""
    tokenizer = _chat_tokenizer()
    directory = tmp_path_factory.mktemp("chat") / "model"
    save_pretrained(build_tiny_causal_lm(tokenizer, max_positions=32), tokenizer, directory)
    return directory


def test_sft_trains_on_the_assistant_turns_only(chat_model):
    tokenizer = load_tokenizer(chat_model)
    assert tokenizer.chat_template == TEMPLATE
    rows = [{"messages": CONVERSATION}, {"prompt": "5 4 =", "completion": "4 5"}]  # chat and plain rows mix
    trainer = SFTTrainer(SFTConfig.from_dict({"model": str(chat_model), "epochs": 1, "batch_size": 2, "tensorboard": False}),
                         train_rows=rows, eval_rows=rows, progress=False, verbose=False)
    batch = trainer._batch(trainer.train_examples)
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    expected = _ids(tokenizer, "<|system|> = <eos> <|user|> 3 1 2 = <eos> <|assistant|> 1 2 3 <eos> <|user|> 9 8 = <eos> <|assistant|> 8 9 <eos>")
    assert ids[: len(expected)].tolist() == expected
    trained = ids[labels != IGNORE].tolist()
    assert trained == _ids(tokenizer, "1 2 3 <eos> 8 9 <eos>")  # both replies with their end of turn; system and user turns not
    before = trainer.evaluate()
    assert trainer.train()["eval_loss"] < before


def test_chat_prompts_feed_ppo_the_tokens_sft_trained_after(chat_model):
    tokenizer = load_tokenizer(chat_model)
    prompt = CONVERSATION[:2]
    sft = SFTTrainer(SFTConfig.from_dict({"model": str(chat_model), "epochs": 1, "batch_size": 1}),
                     train_rows=[{"messages": CONVERSATION[:3]}], progress=False, verbose=False)
    ids, trained = sft.train_examples[0]
    context = ids[: trained.index(True)]

    seen = []
    config = LMPPOConfig.from_dict({"policy": str(chat_model), "batch_size": 4, "minibatch_size": 2, "total_episodes": 4, "max_new_tokens": 5})
    trainer = LMPPOTrainer(config, reward=lambda p, r: seen.append(p) or sort_gold_reward(p[-1]["content"], r),
                           prompts=[prompt, CONVERSATION[:4]], progress=False, verbose=False)
    assert trainer.prompt_ids[0] == context == _ids(tokenizer, "<|system|> = <eos> <|user|> 3 1 2 = <eos> <|assistant|>")
    assert trainer.update(trainer.rollout([0, 1, 0, 1]))["first_ratio_deviation"] == 0.0
    assert seen[0] == prompt  # a reward function receives the message list


def test_reward_model_ranks_chat_pairs(chat_model):
    pairs = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": good}],
              "rejected": [{"role": "assistant", "content": bad}]} for p, good, bad in [("3 1 2 =", "1 2 3", "3 2 1"), ("9 8 =", "8 9", "9 9")]]
    pairs += [{"chosen": [{"role": "user", "content": "5 4 ="}, {"role": "assistant", "content": "4 5"}],  # whole conversations, no prompt
               "rejected": [{"role": "user", "content": "5 4 ="}, {"role": "assistant", "content": "5 5"}]}]
    trainer = RewardModelTrainer(RewardModelConfig.from_dict({"model": str(chat_model), "epochs": 30, "batch_size": 3, "learning_rate": 3e-3,
                                                              "tensorboard": False}),
                                 train_rows=pairs, eval_rows=pairs, progress=False, verbose=False)
    tokenizer = trainer.tokenizer
    assert trainer.train_examples[0][0] == _ids(tokenizer, "<|user|> 3 1 2 = <eos> <|assistant|> 1 2 3 <eos>")
    assert trainer.train()["eval_accuracy"] == 1.0


def test_chat_rows_without_a_chat_template_name_the_file_and_line(saved_model, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "1 =", "completion": "1"}, {"messages": CONVERSATION[1:3]}])
    with pytest.raises(ConfigError, match=r"sft\.jsonl:2 .*holds chat messages, but the tokenizer .* has no chat template"):
        SFTTrainer(SFTConfig.from_dict({"model": str(saved_model), "data": str(data), "eval_fraction": 0.0}), progress=False, verbose=False)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"messages": CONVERSATION[1:2]}])
    with pytest.raises(ConfigError, match=r"prompts\.jsonl:1: the row holds chat messages, but the tokenizer .* has no chat template"):
        LMPPOTrainer(LMPPOConfig.from_dict({"policy": str(saved_model), "prompts": str(prompts), "batch_size": 1, "minibatch_size": 1,
                                            "total_episodes": 1}), reward=sort_gold_reward, progress=False, verbose=False)


def test_bad_chat_rows_are_clear_errors(tmp_path):
    path = tmp_path / "rows.jsonl"
    cases = [("sft", {"messages": "hello"}, r":1: field 'messages' must be a non-empty list"),
             ("sft", {"messages": [{"role": "user", "content": "hi"}]}, r":1: field 'messages' has no assistant turn"),
             ("sft", {"messages": [{"role": "user", "content": ["a", "b"]}]}, r"message 0: expected \{'role': str, 'content': str\}"),
             ("preference", {"chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "user", "content": "b"}]},
              r"field 'rejected' must end with an assistant message"),
             ("prompt", {"text": "x"}, r"missing field 'prompt'; expected fields \['prompt'\] or \{'messages': \[...\]\}")]
    for kind, row, message in cases:
        path.write_text(json.dumps(row) + "\n")
        with pytest.raises(ConfigError, match=message):
            load_rows(path, kind)


def test_generate_renders_chat_prompts(chat_model, tmp_path, capsys):
    from ppokit.cli import main

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"messages": CONVERSATION[:2]}, {"prompt": "7 ="}])
    torch.manual_seed(0)
    assert main(["lm", "generate", str(chat_model), "--prompts", str(prompts), "--greedy", "--max-new-tokens", "3", "--device", "cpu"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["prompt"] == CONVERSATION[:2] and lines[1]["prompt"] == "7 ="
    assert all(isinstance(line["response"], str) for line in lines)
