"""Language-model front end: token-level helpers, data, models, rewards and the PPO trainer on ppokit.core."""

import json
import math
import random

import pytest
import torch

from ppokit.core import gae_reference, kl_k1, kl_k3, masked_mean, masked_whiten
from ppokit.core.batch import last_token_index
from ppokit.core.estimators import AdvantageInputs, estimate_advantages
from ppokit.errors import ConfigError, RewardError
from ppokit.lm.config import LMPPOConfig
from ppokit.lm.data import load_rows
from ppokit.lm.generation import GenerationSettings, generate, sample_responses
from ppokit.lm.models import ensure_pad_token, load_causal_lm, load_scalar_model, load_tokenizer
from ppokit.lm.ppo import LMPPOTrainer, per_token_rewards
from ppokit.lm.reward_model import sequence_scores
from ppokit.lm.rewards import FunctionReward, ResponseBatch
from ppokit.lm.rollout import Responses, pad_responses
from ppokit.lm.scoring import response_logits
from ppokit.lm.sequences import causal_inputs, pad_sequences, token_logprobs, truncate_at_eos
from ppokit.lm.tasks import get_task, sort_gold_reward

SORT = get_task("sort")


def _prompts(n, seed=0):
    rng = random.Random(seed)
    return [SORT.sample_prompt(rng) for _ in range(n)]


def _trainer(saved_model, reward, **overrides):
    values = {"policy": str(saved_model), "batch_size": 8, "minibatch_size": 4, "n_epochs": 2, "total_episodes": 16,
              "max_new_tokens": 7, "learning_rate": 1e-3, "score_normalization": "none", **overrides}
    return LMPPOTrainer(LMPPOConfig.from_dict(values), reward=reward, prompts=_prompts(32), progress=False, verbose=False)


# ---------------------------------------------------------------- masks, KL, last token, EOS
def test_masked_mean_and_whiten_over_response_tokens():
    values = torch.tensor([[1.0, 3.0, 99.0], [5.0, -40.0, -40.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert masked_mean(values, mask).item() == pytest.approx(3.0)  # (1 + 3 + 5) / 3
    white = masked_whiten(values, mask)
    real = white[mask.bool()]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert real.var().item() == pytest.approx(1.0, rel=1e-4)  # padding (99, -40) does not enter the statistics
    torch.testing.assert_close(real, (torch.tensor([1.0, 3.0, 5.0]) - 3.0) / 2.0)


def test_per_token_kl_penalty_k1_and_k3_hand_computed():
    logprobs = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))
    ref = torch.log(torch.tensor([[0.25, 0.4, 0.1]]))
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    k1 = kl_k1(logprobs, ref) * mask
    k3 = kl_k3(logprobs, ref) * mask
    torch.testing.assert_close(k1, torch.tensor([[math.log(2.0), math.log(0.5), 0.0]]))
    torch.testing.assert_close(k3, torch.tensor([[-0.5 + math.log(2.0), 1.0 - math.log(2.0), 0.0]]))
    rewards = per_token_rewards(torch.tensor([2.0]), k1, mask, kl_coef=0.1)
    # -0.1 * KL on each real token, the score on the last real one (column 1), nothing on padding
    torch.testing.assert_close(rewards, torch.tensor([[-0.1 * math.log(2.0), -0.1 * math.log(0.5) + 2.0, 0.0]]))


def test_last_token_index_left_and_right_padding():
    right_ids, right_mask = pad_sequences([[5, 6, 7], [5]], pad_id=0, side="right")
    left_ids, left_mask = pad_sequences([[5, 6, 7], [5]], pad_id=0, side="left")
    assert last_token_index(right_mask).tolist() == [2, 0]
    assert last_token_index(left_mask).tolist() == [2, 2]
    assert left_ids.tolist() == [[5, 6, 7], [0, 0, 5]]


def test_reward_score_lands_on_last_real_token_for_either_padding(saved_model):
    tokenizer = load_tokenizer(saved_model)
    model = load_scalar_model(saved_model, tokenizer).eval()
    sequences = [tokenizer("3 1 2 = 1 2 3").input_ids, tokenizer("9 =").input_ids, tokenizer("4 4 = 4").input_ids]
    with torch.no_grad():
        alone = torch.cat([sequence_scores(model, torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long)) for s in sequences])
        for side in ("left", "right"):
            ids, mask = pad_sequences(sequences, tokenizer.pad_token_id, side=side)
            torch.testing.assert_close(sequence_scores(model, ids, mask), alone, rtol=1e-5, atol=1e-5)


def test_trailing_padding_skips_the_mask_without_changing_real_logits(saved_model):
    tokenizer = load_tokenizer(saved_model)
    model = load_causal_lm(saved_model, tokenizer).eval()
    sequences = [tokenizer("3 1 2 = 1 2 3").input_ids, tokenizer("9 = 9").input_ids]
    right_ids, right_mask = pad_sequences(sequences, tokenizer.pad_token_id, side="right")
    left_ids, left_mask = pad_sequences(sequences, tokenizer.pad_token_id, side="left")
    assert causal_inputs(right_mask) == {}
    assert set(causal_inputs(left_mask)) == {"attention_mask", "position_ids"}
    with torch.no_grad():
        unmasked = model(input_ids=right_ids, **causal_inputs(right_mask)).logits
        masked = model(input_ids=right_ids, attention_mask=right_mask).logits
        left = model(input_ids=left_ids, **causal_inputs(left_mask)).logits
    real = right_mask.bool()
    torch.testing.assert_close(unmasked[real], masked[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(left[left_mask.bool()], masked[real], rtol=1e-5, atol=1e-5)


def test_truncate_at_eos_masks_everything_after_the_first_eos():
    eos, pad = 1, 0
    responses = torch.tensor([[5, eos, 7, eos], [5, 6, 7, 8], [eos, 4, 4, 4]])
    cut, mask, has_eos = truncate_at_eos(responses, eos, pad)
    assert cut.tolist() == [[5, eos, pad, pad], [5, 6, 7, 8], [eos, pad, pad, pad]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert has_eos.tolist() == [True, False, True]


def test_missing_eos_penalty_applies_only_to_unfinished_responses(saved_model):
    trainer = _trainer(saved_model, reward=lambda prompt, response: 0.0, missing_eos_penalty=1.5, max_new_tokens=2)
    batch = trainer.rollout(list(range(8)))
    has_eos = batch.has_eos
    assert (~has_eos).any(), "an untrained model stops within 2 tokens on every prompt; the test needs unfinished ones"
    torch.testing.assert_close(batch.scores, torch.where(has_eos, 0.0, -1.5))


# ---------------------------------------------------------------- one core: GAE and the update
def test_token_advantages_equal_core_gae_with_gamma_one():
    generator = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(4, 6, generator=generator), torch.randn(4, 6, generator=generator)
    lengths = [6, 3, 1, 4]
    mask = torch.tensor([[1.0] * n + [0.0] * (6 - n) for n in lengths])
    inputs = AdvantageInputs(rewards, torch.zeros(4), mask, values=values, gamma=1.0, gae_lambda=0.95)
    advantages, returns = estimate_advantages("gae", inputs)
    for row, n in enumerate(lengths):
        # each response alone, as one episode ending (terminated) at its last token
        done = torch.zeros(n, 1, dtype=torch.bool)
        done[-1] = True
        next_values = torch.cat([values[row, 1:n], torch.zeros(1)]).unsqueeze(1)
        expected, expected_returns = gae_reference(rewards[row, :n, None], values[row, :n, None], next_values, done, done, 1.0, 0.95)
        torch.testing.assert_close(advantages[row, :n], expected[:, 0])
        torch.testing.assert_close(returns[row, :n], expected_returns[:, 0])
        assert advantages[row, n:].abs().sum() == 0  # padding carries nothing


def test_ppo_update_runs_through_core_gae_and_ppo_update(saved_model, monkeypatch):
    import ppokit.core.estimators as estimators
    import ppokit.lm.ppo as lm_ppo

    calls = {"gae": 0, "ppo_update": 0}
    real_gae, real_update = estimators.gae, lm_ppo.ppo_update

    def spy_gae(*args, **kwargs):
        calls["gae"] += 1
        return real_gae(*args, **kwargs)

    def spy_update(*args, **kwargs):
        calls["ppo_update"] += 1
        return real_update(*args, **kwargs)

    monkeypatch.setattr(estimators, "gae", spy_gae)
    monkeypatch.setattr(lm_ppo, "ppo_update", spy_update)
    trainer = _trainer(saved_model, reward=sort_gold_reward)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    batch = trainer.rollout(list(range(8)))
    stats = trainer.update(batch)
    assert calls == {"gae": 1, "ppo_update": 1}
    assert stats["first_ratio_deviation"] == 0.0  # old log-probs are recomputed exactly as in the update
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.policy.parameters()))
    assert all(not p.requires_grad for p in trainer.reference.parameters())


def test_adaptive_kl_controller_moves_toward_target(saved_model):
    trainer = _trainer(saved_model, reward=sort_gold_reward, adaptive_kl=True, kl_coef=0.1, kl_target=1.0, kl_horizon=100)
    assert trainer.kl_controller.update(5.0, 10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    assert trainer.kl_controller.update(0.0, 10) < 0.1 * (1 + 0.2 * 10 / 100)


# ---------------------------------------------------------------- save / load, LoRA
def test_saved_ppo_policy_gives_identical_greedy_generations(saved_model, tmp_path):
    trainer = _trainer(saved_model, reward=sort_gold_reward)
    trainer.update(trainer.rollout(list(range(8))))
    trainer.save(tmp_path / "policy")
    tokenizer = load_tokenizer(tmp_path / "policy")
    loaded = load_causal_lm(tmp_path / "policy", tokenizer)
    ids, mask = pad_sequences([trainer.prompt_ids[i] for i in range(16)], tokenizer.pad_token_id, side="left")
    greedy = GenerationSettings(max_new_tokens=7, greedy=True)
    original = sample_responses(trainer.policy, ids, mask, greedy, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert torch.equal(sample_responses(loaded, ids, mask, greedy, tokenizer.eos_token_id, tokenizer.pad_token_id), original)
    assert original.shape[1] >= 1
    prompts = _prompts(4, seed=3)
    assert generate(loaded, tokenizer, prompts, greedy) == generate(trainer.policy, trainer.tokenizer, prompts, greedy)


def test_lora_reference_is_the_base_with_adapter_off(saved_model):
    trainer = _trainer(saved_model, reward=sort_gold_reward, lora={"r": 4, "alpha": 8, "target_modules": ["c_attn"]})
    assert trainer.reference is None
    base = load_causal_lm(saved_model, trainer.tokenizer).eval()
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    trainer.update(trainer.rollout(list(range(8))))
    ids, mask = pad_sequences([trainer.prompt_ids[0] + [3, 4, 5]], trainer.tokenizer.pad_token_id, side="left")
    responses = ids[:, -3:]
    with torch.no_grad():
        rows = Responses([0], [trainer.prompts[0]], [trainer.prompt_ids[0]], [[3, 4, 5]], ["x"], torch.tensor([False]))
        reference = trainer.reference_logprobs(pad_responses(rows, torch.zeros(1), trainer.tokenizer.pad_token_id, trainer.device))
        pad = trainer.unsampled_token  # the pad token, never sampled: scored at probability 0
        expected = token_logprobs(response_logits(base, ids, mask, ids.shape[1] - 3, trainer.precision), responses, suppressed=pad)
        trained = token_logprobs(response_logits(trainer.policy, ids, mask, ids.shape[1] - 3, trainer.precision), responses, suppressed=pad)
    torch.testing.assert_close(reference, expected)
    assert not torch.allclose(trained, expected)  # the adapter did learn something
    assert all(torch.equal(frozen[k], v) for k, v in trainer.trained_policy().state_dict().items() if "c_attn" not in k and k in frozen)


# ---------------------------------------------------------------- bad input
def test_tokenizer_without_pad_token_gets_a_distinct_one(saved_model, tmp_path):
    tokenizer = SORT.build_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token  # the common shortcut: pad == EOS
    assert ensure_pad_token(tokenizer) is True
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    model = load_causal_lm(saved_model, tokenizer)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    # a saved tokenizer with no pad at all is given one when loaded
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("pad_token", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    reloaded = load_tokenizer(tmp_path)
    assert reloaded.pad_token_id is not None and reloaded.pad_token_id != reloaded.eos_token_id


def test_dataset_row_missing_a_field_names_the_line(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b"}\n')
    with pytest.raises(ConfigError, match=r"prefs.jsonl:2: missing field 'rejected'"):
        load_rows(path, "preference")
    path.write_text('{"prompt": "a", "completion": 3}\n')
    with pytest.raises(ConfigError, match=r":1: field 'completion' must be a string"):
        load_rows(path, "sft")
    path.write_text('{"prompt": "a"\n')
    with pytest.raises(ConfigError, match=r":1: not valid JSON"):
        load_rows(path, "prompt")


def test_datasets_objects_are_accepted_and_checked():
    datasets = pytest.importorskip("datasets")
    rows = datasets.Dataset.from_list([{"prompt": "1 2 =", "completion": "1 2"}, {"prompt": "3 =", "completion": "3"}])
    assert load_rows(rows, "sft") == [{"prompt": "1 2 =", "completion": "1 2"}, {"prompt": "3 =", "completion": "3"}]
    with pytest.raises(ConfigError, match=r"row 1: missing field 'completion'"):
        load_rows(datasets.Dataset.from_list([{"prompt": "1 ="}]), "sft")


def test_prompt_longer_than_the_context_is_an_error_or_truncated(saved_model):
    long_prompt = " ".join(["3"] * 14) + " ="  # 15 tokens; the context is 16 and 7 new tokens are asked for
    config = LMPPOConfig.from_dict({"policy": str(saved_model), "batch_size": 8, "minibatch_size": 4, "total_episodes": 8, "max_new_tokens": 7})
    with pytest.raises(ConfigError, match=r"prompt 2 is 15 tokens.*context of 16 tokens"):
        LMPPOTrainer(config, reward=sort_gold_reward, prompts=["1 2 =", long_prompt], progress=False, verbose=False)
    config.update({"truncate_prompts": True})
    trainer = LMPPOTrainer(config, reward=sort_gold_reward, prompts=["1 2 =", long_prompt], progress=False, verbose=False)
    assert len(trainer.prompt_ids[1]) == 16 - 7


def test_reward_function_that_raises_or_returns_nan_is_a_clear_error():
    batch = ResponseBatch(["1 2 ="], ["2 1"], torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long), None)

    def broken(prompt, response):
        raise KeyError("oops")

    with pytest.raises(RewardError, match=r"reward function 'broken' raised KeyError.*prompt '1 2 ='.*response '2 1'"):
        FunctionReward(broken).score(batch)
    with pytest.raises(RewardError, match=r"returned nan.*expected a finite number"):
        FunctionReward(lambda p, r: float("nan"), name="nan_reward").score(batch)
    torch.testing.assert_close(FunctionReward(sort_gold_reward).score(batch), torch.tensor([0.0]))


def test_pickled_weights_are_refused_not_loaded(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"not opened")
    with pytest.raises(ConfigError, match=r"no \*\.safetensors weights.*never unpickles"):
        load_causal_lm(tmp_path)


def test_unknown_lm_config_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"unknown config key 'kl_coeff'; did you mean 'kl_coef'"):
        LMPPOConfig.from_dict({"kl_coeff": 0.1})
    with pytest.raises(ConfigError, match=r"minibatch_size=32 is larger than batch_size=16"):
        LMPPOConfig.from_dict({"batch_size": 16, "minibatch_size": 32})


# ---------------------------------------------------------------- SFT and the command line
def test_sft_loss_counts_completion_tokens_only(saved_model, tmp_path):
    from ppokit.lm.config import SFTConfig
    from ppokit.lm.sft import IGNORE, SFTTrainer

    rows = [{"prompt": "3 1 2 =", "completion": "1 2 3"}, {"prompt": "9 =", "completion": "9"}]
    trainer = SFTTrainer(SFTConfig.from_dict({"model": str(saved_model), "epochs": 1, "batch_size": 2}), train_rows=rows, eval_rows=rows,
                         progress=False, verbose=False)
    batch = trainer._batch(trainer.train_examples)
    eos = trainer.tokenizer.eos_token_id
    # row 0: 4 prompt tokens ignored, then "1 2 3 <eos>"; row 1: 2 prompt tokens, "9 <eos>", then padding ignored
    assert (batch["labels"][0, :4] == IGNORE).all() and batch["labels"][0, 4:].tolist()[-1] == eos
    assert (batch["labels"][1, :2] == IGNORE).all() and (batch["labels"][1, 4:] == IGNORE).all()
    _, count = trainer.loss(batch)
    assert count == 4 + 2
    before = trainer.evaluate()
    result = trainer.train()
    assert result["eval_loss"] < before


def test_lm_cli_rejects_bad_keys_and_generates_json_lines(saved_model, capsys):
    from ppokit.cli import main

    assert main(["lm", "sft", f"model={saved_model}", "data=x.jsonl", "learning_rte=1e-4"]) == 2
    assert "unknown config key 'learning_rte'; did you mean 'learning_rate'" in capsys.readouterr().err
    assert main(["lm", "ppo", f"policy={saved_model}"]) == 2
    assert "needs prompts=..." in capsys.readouterr().err
    assert main(["lm", "generate", str(saved_model), "--prompt", "3 1 =", "--prompt", "2 =", "--max-new-tokens", "3", "--greedy"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["prompt"] for line in lines] == ["3 1 =", "2 ="]
    assert main(["lm", "demo", "no-such-task"]) == 2
    assert "unknown demo task 'no-such-task'" in capsys.readouterr().err


def test_demo_preference_pairs_do_not_depend_on_the_hash_seed():
    """Ties in gold reward keep the sampling order, not a set's per-process string-hash order."""
    import subprocess
    import sys

    script = (
        "import json, ppokit.lm.demo as demo\n"
        "from ppokit.lm.tasks import get_task\n"
        # four samples for each of two prompts: for the first, one right answer and three tied at 0.8
        "answers = iter([['1 2 3 4 5', '9'], ['1 2 3 4 4', '9'], ['1 2 3 4 9', '9'], ['0 2 3 4 5', '9']])\n"
        "demo.generate = lambda *args, **kwargs: next(answers)\n"
        "pairs = demo._labelled_pairs(None, None, ['5 4 3 2 1 =', '9 9 9 9 9 ='], get_task('sort'), max_new_tokens=7)\n"
        "print(json.dumps(pairs))\n"
    )
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2, 3)}
    assert len(outputs) == 1
    pairs = json.loads(outputs.pop())
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("1 2 3 4 5", "1 2 3 4 4"), ("1 2 3 4 5", "1 2 3 4 9"), ("1 2 3 4 5", "0 2 3 4 5")]


def test_a_pad_token_that_is_the_eos_stays_sampled_and_scored():
    """A chat tokenizer that pads with its end of turn: that token ends every response, so neither generation
    nor scoring may suppress it; a distinct pad token is never sampled and scores probability 0."""
    from ppokit.lm.generation import unsampled_token

    assert unsampled_token(pad_id=7, eos_id=7) is None and unsampled_token(pad_id=0, eos_id=2) == 0 and unsampled_token(None, 2) is None
    logits = torch.randn(1, 3, 10)
    eos = torch.tensor([[4, 1, 7]])
    scored = token_logprobs(logits, eos, suppressed=unsampled_token(7, 7))
    torch.testing.assert_close(scored, torch.log_softmax(logits, -1).gather(-1, eos[..., None])[..., 0])
    assert torch.isfinite(scored).all()
    without_pad = token_logprobs(logits, torch.tensor([[4, 1, 0]]), suppressed=unsampled_token(0, 7))
    assert without_pad[0, 2] == 0.0 and torch.isfinite(without_pad).all()  # padding after the EOS: 0, never -inf x 0
