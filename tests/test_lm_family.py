"""The PPO family in the language-model trainer: groups of samples per prompt, no value model for the critic-free
estimators, no reference with kl_coef 0, the KL as a loss term, one epoch without a scoring pass, dynamic
sampling, held-out evaluation, completions, timings, exact resume and clear errors."""

import csv
import json
import random

import pytest
import torch

from ppokit.checkpoint import list_checkpoints, load_checkpoint
from ppokit.distributed import World
from ppokit.errors import ConfigError, RewardError
from ppokit.lm.config import LMPPOConfig
from ppokit.lm.ppo import LMPPOTrainer, check_batch_layout
from ppokit.lm.tasks import get_task, sort_gold_reward

SORT = get_task("sort")


def _prompts(n, seed=0):
    rng = random.Random(seed)
    return [SORT.sample_prompt(rng) for _ in range(n)]


def _trainer(saved_model, run_dir=None, reward=sort_gold_reward, prompts=None, eval_prompts=None, **overrides):
    values = {"policy": str(saved_model), "batch_size": 8, "minibatch_size": 4, "n_epochs": 2, "total_episodes": 16, "max_new_tokens": 7,
              "learning_rate": 1e-3, "tensorboard": False, "torch_threads": 1, "advantage_estimator": "grpo", "samples_per_prompt": 4,
              **overrides}
    return LMPPOTrainer(LMPPOConfig.from_dict(values), run_dir=run_dir, reward=reward, prompts=prompts or _prompts(32), eval_prompts=eval_prompts,
                        progress=False, verbose=False)


def _rows(run_dir):
    with open(run_dir / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


def _forward_counter(model):
    calls = []
    body = getattr(model, model.base_model_prefix)
    body.register_forward_pre_hook(lambda module, args, kwargs: calls.append((kwargs.get("input_ids") if args == () else args[0]).shape), with_kwargs=True)
    return calls


def test_grpo_samples_groups_builds_no_value_model_and_saves_none(saved_model, tmp_path):
    trainer = _trainer(saved_model, run_dir=tmp_path, total_episodes=8)
    assert trainer.value_model is None and trainer.models.value_scores is None
    assert all(p.requires_grad for p in trainer.parameters) and len(trainer.parameters) == len(list(trainer.policy.parameters()))
    rollout = trainer.rollout([0, 1])  # 2 prompts x 4 samples
    assert rollout.responses.prompt_indices == [0] * 4 + [1] * 4 and rollout.group_ids.tolist() == [0] * 4 + [1] * 4
    assert rollout.values is None and rollout.returns is not None
    stats = trainer.update(rollout)
    assert stats["first_ratio_deviation"] == 0.0 and stats["value_loss"] == 0.0
    trainer.train()
    arrays, _, _ = load_checkpoint(tmp_path, framework="pt")
    assert any(k.startswith("model.policy.") for k in arrays) and not any(k.startswith("model.value.") for k in arrays)
    assert (tmp_path / "policy" / "model.safetensors").is_file() and not (tmp_path / "policy" / "value_model").exists()
    row = _rows(tmp_path)[-1]
    assert row["losses/value_loss"] == "" and row["losses/explained_variance"] == ""  # nothing to report without a value model
    for column in ("time/generate", "time/score", "time/update", "env/response_length_max", "env/clipped_fraction", "env/zero_variance_groups"):
        assert float(row[column]) >= 0.0, column


def test_kl_coef_zero_runs_no_reference_model(saved_model):
    trainer = _trainer(saved_model, kl_coef=0.0)
    assert trainer.reference is None and not trainer.models.uses_reference
    lora = _trainer(saved_model, kl_coef=0.0, lora={"r": 4, "alpha": 8, "target_modules": ["c_attn"]})
    adapter_off = []
    lora.policy.disable_adapter = lambda: adapter_off.append(1)  # the LoRA policy's reference: must never be asked for
    rollout = lora.rollout([0, 1])
    assert rollout.ref_logprobs is None and rollout.kl is None and adapter_off == []
    assert lora.update(rollout)["first_ratio_deviation"] == 0.0


def test_kl_penalty_loss_keeps_the_reward_free_of_kl_and_adds_the_k3_term(saved_model):
    trainer = _trainer(saved_model, kl_penalty="loss", kl_coef=0.5, n_epochs=2)
    rollout = trainer.rollout([0, 1])
    rows = torch.arange(len(rollout))
    last = (rollout.mask.sum(1) - 1).long()
    only_scores = torch.zeros_like(rollout.token_rewards)
    only_scores[rows, last] = rollout.scores
    torch.testing.assert_close(rollout.token_rewards, only_scores)  # no -kl_coef x KL in the per-token rewards
    assert rollout.ref_logprobs is not None
    stats = trainer.update(rollout)
    assert "kl" in stats and stats["kl"] >= 0.0
    assert trainer.settings.kl_loss_coef == 0.5


def test_one_epoch_takes_its_old_logprobs_from_its_own_pass_instead_of_scoring_twice(saved_model):
    for epochs, scored in ((1, False), (2, True)):
        trainer = _trainer(saved_model, n_epochs=epochs, kl_penalty="loss", batch_size=8, minibatch_size=8)
        calls = _forward_counter(trainer.policy)
        rollout = trainer.rollout([0, 1])
        # the generation's prompt pass (its later steps feed one token each); a scoring pass adds its own
        multi_token = [shape for shape in calls if shape[1] > 1]
        assert (rollout.logprobs is not None) == scored and (len(multi_token) > 1) == scored, multi_token
        assert trainer.update(rollout)["first_ratio_deviation"] == 0.0


def test_dynamic_sampling_replaces_groups_of_equal_rewards(saved_model, tmp_path):
    def half_constant(prompt, response):  # prompts starting with an even digit give every response the same reward
        return 0.5 if int(prompt[0]) % 2 == 0 else sort_gold_reward(prompt, response)

    prompts = _prompts(64, seed=4)
    trainer = _trainer(saved_model, run_dir=tmp_path, reward=half_constant, prompts=prompts, dynamic_sampling=True, batch_size=16,
                       minibatch_size=8, total_episodes=32, missing_eos_penalty=None)
    rollout = trainer.rollout(trainer._next_prompts())
    assert len(rollout) == 16
    scores = rollout.responses.raw_scores.view(4, 4)
    informative = (scores.max(1).values > scores.min(1).values)
    assert informative.sum() >= 3  # most groups carry signal (a short batch is filled with dropped groups)
    assert 0.0 < rollout.extra["env/dropped_groups"] < 1.0 and rollout.extra["env/sampling_rounds"] >= 2
    trainer.train()
    assert float(_rows(tmp_path)[-1]["env/dropped_groups"]) > 0.0

    never = _trainer(saved_model, reward=lambda p, r: 1.0, dynamic_sampling=True, dynamic_sampling_max_rounds=2, missing_eos_penalty=None)
    bounded = never.rollout(never._next_prompts())
    # bounded at 1 + 2 rounds of 2 groups, then filled with 2 of the 6 dropped groups: 4 of 6 generated groups go unused
    assert len(bounded) == 8 and bounded.extra == {"env/dropped_groups": pytest.approx(4 / 6), "env/sampling_rounds": 3.0}


@pytest.mark.parametrize("estimator", ["grpo", "reinforce++"])
def test_resumed_run_of_a_new_estimator_with_dynamic_sampling_ends_bitwise_identical(saved_model, tmp_path, estimator):
    import shutil

    def reward(prompt, response):
        return 0.3 if prompt[0] in "02468" else sort_gold_reward(prompt, response)

    options = {"advantage_estimator": estimator, "samples_per_prompt": 4 if estimator == "grpo" else 1, "dynamic_sampling": estimator == "grpo",
               "total_episodes": 8 * 4, "checkpoint_interval": 2, "keep_checkpoints": 5, "seed": 2, "eval_interval": 2, "eval_samples": 2,
               "log_completions": 3}
    prompts, held_out = _prompts(40, seed=5), _prompts(4, seed=6)
    full = LMPPOTrainer(LMPPOConfig.from_dict(_values(saved_model, options)), run_dir=tmp_path / "full", reward=reward, prompts=prompts,
                        eval_prompts=held_out, progress=False, verbose=False)
    full.train()
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    for checkpoint in list_checkpoints(tmp_path / "resumed"):
        if checkpoint.name != "update_000000002":
            shutil.rmtree(checkpoint)
    resumed = LMPPOTrainer.resume(tmp_path / "resumed", reward=reward, prompts=prompts, eval_prompts=held_out, progress=False, verbose=False)
    resumed.train()
    for name, parameter in full.policy.named_parameters():
        assert torch.equal(parameter, dict(resumed.policy.named_parameters())[name]), name
    assert [r["step"] for r in _rows(tmp_path / "resumed")] == ["1", "2", "3", "4"]
    lines = (tmp_path / "resumed" / "completions.jsonl").read_text().splitlines()
    assert [json.loads(line)["update"] for line in lines] == [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3  # redone updates written once


def _values(saved_model, options):
    return {"policy": str(saved_model), "batch_size": 8, "minibatch_size": 4, "n_epochs": 2, "max_new_tokens": 7, "learning_rate": 1e-3,
            "tensorboard": False, "torch_threads": 1, **options}


def test_held_out_evaluation_is_logged_and_leaves_training_unchanged(saved_model, tmp_path):
    held_out = _prompts(6, seed=9)
    options = {"total_episodes": 8 * 3, "eval_interval": 2, "eval_samples": 3, "eval_before_training": True, "eval_pass_threshold": 0.6,
               "log_completions": 2, "tensorboard": True}
    evaluated = _trainer(saved_model, run_dir=tmp_path / "eval", eval_prompts=held_out, **options)
    evaluated.train()
    plain = _trainer(saved_model, total_episodes=8 * 3)
    plain.train()
    for name, parameter in plain.policy.named_parameters():  # evaluation draws from a random stream of its own
        assert torch.equal(parameter, dict(evaluated.policy.named_parameters())[name]), name
    rows = _rows(tmp_path / "eval")
    logged = {row["step"]: row for row in rows if row["eval/score"] != ""}
    assert sorted(logged) == ["0", "2", "3"]  # before training, every 2 updates, and at the end
    after = evaluated.evaluate()
    assert float(logged["3"]["eval/score"]) == pytest.approx(after["score"]) and float(logged["3"]["eval/pass@k"]) == pytest.approx(after["pass@3"])
    assert 0.0 <= after["pass@3"] <= 1.0 and after["score_mean"] <= 1.0 and "kl" in after
    completions = [json.loads(line) for line in (tmp_path / "eval" / "completions.jsonl").read_text().splitlines()]
    assert len(completions) == 6 and set(completions[0]) == {"update", "prompt", "response", "reward", "advantage", "group"}

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "eval"), size_guidance={"tensors": 0}).Reload()
    texts = events.Tensors("completions")
    assert len(texts) == 3 and "| reward | advantage |" in texts[0].tensor_proto.string_val[0].decode()


def test_a_reward_that_fails_on_one_of_the_samples_names_prompt_and_response(saved_model):
    calls = []

    def flaky(prompt, response):
        calls.append(1)
        return float("nan") if len(calls) == 6 else 0.5

    trainer = _trainer(saved_model, reward=flaky)
    with pytest.raises(RewardError, match=r"returned nan for prompt '.*' and response '.*'; expected a finite number"):
        trainer.rollout([0, 1])


def test_family_settings_are_checked_with_clear_errors():
    choices = r"\['dr_grpo', 'gae', 'grpo', 'reinforce\+\+', 'reinforce\+\+-baseline', 'rloo'\], got 'ppo2'"
    with pytest.raises(ConfigError, match=r"advantage_estimator must be one of " + choices):
        LMPPOConfig.from_dict({"advantage_estimator": "ppo2"})
    with pytest.raises(ConfigError, match=r"advantage_estimator=grpo compares the responses to one prompt: set samples_per_prompt to 2 or more"):
        LMPPOConfig.from_dict({"advantage_estimator": "grpo"})
    with pytest.raises(ConfigError, match=r"batch_size=10 is not a multiple of samples_per_prompt=4"):
        LMPPOConfig.from_dict({"advantage_estimator": "rloo", "samples_per_prompt": 4, "batch_size": 10, "minibatch_size": 2})
    with pytest.raises(ConfigError, match=r"dynamic_sampling drops groups .* advantage_estimator=gae is not one"):
        LMPPOConfig.from_dict({"dynamic_sampling": True})
    with pytest.raises(ConfigError, match=r"loss_aggregation must be one of"):
        LMPPOConfig.from_dict({"loss_aggregation": "sum"})
    config = LMPPOConfig.from_dict({"advantage_estimator": "grpo", "samples_per_prompt": 4, "batch_size": 12, "minibatch_size": 6})
    with pytest.raises(ConfigError, match=r"batch_size=12 over 2 processes gives each 6 responses, not whole groups of samples_per_prompt=4"):
        check_batch_layout(config, World(size=2))
    check_batch_layout(LMPPOConfig.from_dict({"advantage_estimator": "grpo", "samples_per_prompt": 4, "batch_size": 16, "minibatch_size": 8}),
                       World(size=2))
    defaults = LMPPOConfig.from_dict({"advantage_estimator": "grpo", "samples_per_prompt": 2})
    assert defaults.resolved_score_normalization == "none" and not defaults.resolved_whiten_advantages and not defaults.uses_value_model
    gae = LMPPOConfig()
    assert gae.resolved_score_normalization == "running" and gae.resolved_whiten_advantages and gae.uses_value_model
    settings = LMPPOConfig.from_dict({"clip_range_low": 0.2, "clip_range_high": 0.28, "loss_aggregation": "seq-mean-token-sum-norm",
                                      "max_new_tokens": 32}).update_settings()
    assert (settings.clip_range, settings.clip_range_high, settings.aggregation_horizon) == (0.2, 0.28, 32)
