"""The 87M-parameter GPT-2 of the language-model memory and speed benchmarks, built here (nothing is downloaded).

GPT-2's shape (12 layers x 768, 12 heads, 1,024 positions) with a word-level vocabulary of 1,700
tokens: 87.1M parameters. With that many tokens an untrained model almost never samples EOS, so
every response runs to max_new_tokens in every library, and tokens per second mean the same thing.
A reward model of the same size (scalar head) scores the responses.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

VOCABULARY = 1_700
PROMPT_WORDS = 32


def build(directory: str | Path, seed: int = 0, prompts: int = 256) -> dict[str, str]:
    """Write policy/, reward_model/ and prompts.jsonl under ``directory`` (once); returns their paths."""
    directory = Path(directory)
    paths = {"policy": directory / "policy", "reward_model": directory / "reward_model", "prompts": directory / "prompts.jsonl"}
    if not all(path.exists() for path in paths.values()):
        import torch
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, GPT2Config, PreTrainedTokenizerFast

        from ppokit.lm.models import save_pretrained

        words = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(VOCABULARY - 3)]
        backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
        config = GPT2Config(vocab_size=VOCABULARY, n_positions=1024, n_embd=768, n_layer=12, n_head=12, activation_function="gelu_pytorch_tanh",
                            pad_token_id=0, eos_token_id=1, bos_token_id=1)
        torch.manual_seed(seed)
        save_pretrained(AutoModelForCausalLM.from_config(config), tokenizer, paths["policy"])
        config.num_labels = 1
        save_pretrained(AutoModelForSequenceClassification.from_config(config), tokenizer, paths["reward_model"])
        rng = random.Random(seed)
        with open(paths["prompts"], "w") as f:
            for _ in range(prompts):
                f.write(json.dumps({"prompt": " ".join(rng.choice(words[3:]) for _ in range(PROMPT_WORDS))}) + "\n")
    return {name: str(path) for name, path in paths.items()}


def parameter_count(policy_dir: str) -> int:
    from safetensors import safe_open

    with safe_open(str(Path(policy_dir) / "model.safetensors"), framework="pt") as f:
        return sum(_numel(f.get_slice(name).get_shape()) for name in f.keys())


def _numel(shape) -> int:
    total = 1
    for size in shape:
        total *= size
    return total
