"""Language models on real hardware: the device and precision keys, memory options, and quiet output.

These run on the CPU; the same code paths run on CUDA (device-agnostic code: one path, no branch
per device). What only a GPU can show (CUDA kernels, fp16 loss scaling on a GPU, memory on a GPU) is
measured by benchmarks/gpu_check.py.
"""

import json
import random

import pytest
import torch

from ppokit.errors import ConfigError
from ppokit.lm.config import LMPPOConfig, SFTConfig
from ppokit.lm.device import placed, resolve_device
from ppokit.lm.models import load_causal_lm, load_scalar_model, load_tokenizer, save_pretrained
from ppokit.lm.ppo import LMPPOTrainer
from ppokit.lm.precision import Precision
from ppokit.lm.rewards import RewardModelReward
from ppokit.lm.scoring import response_logits
from ppokit.lm.tasks import get_task, sort_gold_reward

SORT = get_task("sort")


def _prompts(n, seed=0):
    rng = random.Random(seed)
    return [SORT.sample_prompt(rng) for _ in range(n)]


def _trainer(saved_model, run_dir=None, reward=sort_gold_reward, **overrides):
    values = {"policy": str(saved_model), "batch_size": 8, "minibatch_size": 4, "n_epochs": 2, "total_episodes": 16,
              "max_new_tokens": 7, "learning_rate": 1e-3, "tensorboard": False, **overrides}
    return LMPPOTrainer(LMPPOConfig.from_dict(values), run_dir=run_dir, reward=reward, prompts=_prompts(32), progress=False, verbose=False)


# ---------------------------------------------------------------- devices
def test_device_names_are_checked_and_a_missing_device_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"device must be one of 'auto', 'cpu', 'cuda', 'cuda:N'.*got 'gpu'"):
        LMPPOConfig.from_dict({"device": "gpu"})
    with pytest.raises(ConfigError, match=r"device must be one of"):
        SFTConfig.from_dict({"device": "cuda:x"})
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"device='cuda:1', but torch sees no CUDA GPU here.*use device=auto or device=cpu"):
            resolve_device("cuda:1")
    else:
        with pytest.raises(ConfigError, match=r"this machine has \d+ CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(ConfigError, match=r"fp16-mixed' needs a CUDA device.*use bf16-mixed or fp32"):
        Precision.resolve("fp16-mixed", torch.device("cpu"))
    assert Precision.resolve("auto", torch.device("cpu")).name == "fp32"


def test_run_dir_records_the_device_and_precision(saved_model, tmp_path):
    trainer = _trainer(saved_model, run_dir=tmp_path, precision="bf16-mixed", total_episodes=8)
    trainer.train()
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["device"] == str(trainer.device) and info["precision"] == "bf16-mixed"
    assert {"torch", "transformers", "ppokit"} <= set(info)


@pytest.mark.parametrize("estimator", ["gae", "grpo"])
def test_rollout_and_update_stay_on_the_device_without_numpy(saved_model, monkeypatch, estimator):
    """Scores, their running normalization, advantages and the update are tensors on the device; no .numpy().

    Every tensor the loop creates must say where it lives: with torch's default device set to 'meta' (a device
    that holds no data), one created without a device lands there and the first computation with it fails, as a
    tensor left on the CPU would fail on a GPU."""
    group = {"advantage_estimator": "grpo", "samples_per_prompt": 2, "kl_penalty": "loss"} if estimator == "grpo" else {}
    trainer = _trainer(saved_model, score_normalization="running", **group)

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor went through numpy inside the training loop")

    monkeypatch.setattr(torch.Tensor, "numpy", refuse)
    monkeypatch.setattr(torch.Tensor, "__array__", refuse)
    torch.set_default_device("meta")
    try:
        batch = trainer.rollout(list(range(4 if group else 8)))
        stats = trainer.update(batch)
    finally:
        torch.set_default_device(None)
    assert stats["first_ratio_deviation"] == 0.0
    tensors = [batch.scores, batch.token_rewards, *batch.samples().values(), trainer.score_moments.mean] + ([batch.kl] if batch.kl is not None else [])
    assert all(t.device == trainer.device for t in tensors)
    assert all(p.device == trainer.device for p in trainer.parameters)
    assert float(trainer.score_moments.count) == pytest.approx(8, abs=1e-3)


# ---------------------------------------------------------------- precision
@pytest.mark.parametrize("precision,checkpointing", [("fp32", False), ("bf16-mixed", False), ("bf16", False), ("bf16-mixed", True)])
def test_first_ratio_is_exactly_one_under_every_precision(saved_model, precision, checkpointing):
    trainer = _trainer(saved_model, precision=precision, gradient_checkpointing=checkpointing, grad_accum_steps=2)
    weights = torch.bfloat16 if precision == "bf16" else torch.float32
    for _ in range(2):
        batch = trainer.rollout(list(range(8)))
        stats = trainer.update(batch)
        assert stats["first_ratio_deviation"] == 0.0
        assert batch.logprobs.dtype == torch.float32 and batch.values.dtype == torch.float32
    assert {p.dtype for p in trainer.parameters} == {weights}
    assert {state["exp_avg"].dtype for state in trainer.optimizer.state.values()} == {weights}  # master weights and moments
    with torch.no_grad():
        logits = response_logits(trainer.policy, batch.sequence_ids[:2], batch.sequence_mask[:2], batch.prompt_width, trainer.precision)
    assert logits.dtype == (torch.float32 if precision == "fp32" else torch.bfloat16)  # mixed: the forward pass runs in bfloat16


def test_fp16_loss_scaling_path_runs_and_its_scale_is_checkpointed(saved_model, tmp_path, monkeypatch):
    """fp16-mixed is CUDA-only for users; forced onto the CPU here, its code (float16 autocast, GradScaler
    in the PPO and SFT steps, the scale in checkpoints) runs in the tests too."""
    from ppokit.lm.ppo import LMPPOTrainer as Trainer
    from ppokit.lm.sft import SFTTrainer

    monkeypatch.setattr(Precision, "resolve", classmethod(lambda cls, name, device: cls("fp16-mixed", device)))
    trainer = _trainer(saved_model, run_dir=tmp_path / "ppo", total_episodes=16, checkpoint_interval=1)
    batch = trainer.rollout(list(range(8)))
    with torch.no_grad():
        logits = response_logits(trainer.policy, batch.sequence_ids[:2], batch.sequence_mask[:2], batch.prompt_width, trainer.precision)
    assert logits.dtype == torch.float16
    stats = trainer.update(batch)
    assert stats["first_ratio_deviation"] == 0.0 and stats["skipped_steps"] == 0
    trainer.grad_scaler.update(2.0**10)  # a scale of its own, to see it come back
    trainer.save_checkpoint()
    resumed = Trainer.resume(tmp_path / "ppo", reward=sort_gold_reward, prompts=_prompts(32), progress=False, verbose=False)
    assert resumed.grad_scaler.get_scale() == 2.0**10

    rows = [{"prompt": "3 1 2 =", "completion": "1 2 3"}] * 4
    sft = SFTTrainer(SFTConfig.from_dict({"model": str(saved_model), "epochs": 2, "batch_size": 2, "learning_rate": 1e-3, "tensorboard": False}),
                     train_rows=rows, eval_rows=rows[:1], progress=False, verbose=False)
    before = sft.evaluate()
    assert sft.grad_scaler is not None and sft.train()["eval_loss"] < before


def test_lora_adapters_train_in_float32_over_a_bfloat16_base(saved_model):
    trainer = _trainer(saved_model, precision="bf16", gradient_checkpointing=True, lora={"r": 4, "alpha": 8, "target_modules": ["c_attn"]})
    assert {p.dtype for p in trainer.policy.parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in trainer.policy.parameters() if not p.requires_grad} == {torch.bfloat16}
    assert trainer.update(trainer.rollout(list(range(8))))["first_ratio_deviation"] == 0.0


def test_inference_dtype_keeps_the_frozen_models_in_bfloat16(saved_model, tmp_path):
    tokenizer = load_tokenizer(saved_model)
    save_pretrained(load_scalar_model(saved_model, tokenizer), tokenizer, tmp_path / "rm")
    trainer = LMPPOTrainer(LMPPOConfig.from_dict({"policy": str(saved_model), "reward_model": str(tmp_path / "rm"), "batch_size": 8,
                                                  "minibatch_size": 4, "total_episodes": 8, "max_new_tokens": 7, "inference_dtype": "bf16"}),
                           prompts=_prompts(8), progress=False, verbose=False)
    assert next(trainer.reference.parameters()).dtype == torch.bfloat16
    assert next(trainer.reward.model.parameters()).dtype == torch.bfloat16
    assert next(trainer.policy.parameters()).dtype == torch.float32 and next(trainer.value_model.parameters()).dtype == torch.float32
    assert trainer.update(trainer.rollout(list(range(8))))["first_ratio_deviation"] == 0.0


# ---------------------------------------------------------------- memory
def test_gradient_checkpointing_makes_the_same_update(saved_model):
    results = []
    for checkpointing in (False, True):
        trainer = _trainer(saved_model, gradient_checkpointing=checkpointing, seed=3)
        trainer.update(trainer.rollout(list(range(8))))
        results.append([p.detach().clone() for p in trainer.parameters])
        assert not trainer.policy.training  # back in eval mode for sampling
    base = trainer.policy
    assert base.is_activation_checkpointing if hasattr(base, "is_activation_checkpointing") else base.is_gradient_checkpointing
    for plain, checkpointed in zip(*results):
        torch.testing.assert_close(plain, checkpointed, rtol=1e-5, atol=1e-6)


def test_batch_sizes_bound_every_forward_pass(saved_model):
    """generation_batch_size bounds sampling, forward_batch_size the no-grad scoring, the micro-batch the policy's passes."""
    trainer = _trainer(saved_model, generation_batch_size=2, forward_batch_size=3, grad_accum_steps=2)
    seen = {"policy": [], "reference": [], "value": []}
    for name, model in (("policy", trainer.policy), ("reference", trainer.reference), ("value", trainer.value_model)):
        body = getattr(model, model.base_model_prefix)
        body.register_forward_pre_hook(lambda module, args, kwargs, name=name: seen[name].append((kwargs.get("input_ids") if args == () else args[0]).shape[0]),
                                       with_kwargs=True)
    trainer.update(trainer.rollout(list(range(8))))
    assert max(seen["policy"]) == 2  # generation chunks of 2, update micro-batches of 4 / 2
    assert max(seen["reference"]) == 3 and sum(seen["reference"]) == 8
    assert max(seen["value"]) == 3

    # chunking changes the memory, not the result (both trainers fresh, same weights)
    trainer, whole = _trainer(saved_model, generation_batch_size=2, forward_batch_size=3), _trainer(saved_model)
    whole.generation = trainer.generation = whole.generation.__class__(7, greedy=True)
    sampled, chunked = whole.collect(list(range(8))), trainer.collect(list(range(8)))
    assert torch.equal(sampled.response_ids, chunked.response_ids)
    with torch.no_grad():
        torch.testing.assert_close(whole.reference_logprobs(sampled), trainer.reference_logprobs(sampled), rtol=0, atol=1e-6)


def test_offloaded_reference_lives_on_the_cpu_between_uses(saved_model, monkeypatch):
    moves = []

    class Recorder(torch.nn.Linear):
        def to(self, *args, **kwargs):
            moves.append(str(args[0]))
            return self

    with placed(Recorder(2, 2), torch.device("cuda"), offload=True):
        assert moves == ["cuda"]
    assert moves == ["cuda", "cpu"]
    with placed(Recorder(2, 2), torch.device("cuda"), offload=False):
        pass
    assert moves == ["cuda", "cpu"]  # without offloading nothing moves

    # the trainer runs its frozen models inside placed(): the reference and a reward model come to the device to score
    import ppokit.lm.ppo as lm_ppo

    results = []
    for offload in (False, True):
        tokenizer = load_tokenizer(saved_model)
        reward_model = RewardModelReward(load_scalar_model(saved_model, tokenizer), tokenizer)
        trainer = _trainer(saved_model, offload_reference=offload, seed=5, reward=reward_model)
        calls, real_placed = [], lm_ppo.placed

        def spy(module, device, offload_flag, real_placed=real_placed, calls=calls, trainer=trainer, reward_model=reward_model):
            name = "reference" if module is trainer.reference else "reward model" if module is reward_model.model else "other"
            calls.append((name, device, offload_flag))
            return real_placed(module, device, offload_flag)

        lm_ppo.placed = spy
        try:
            batch = trainer.rollout(list(range(8)))
        finally:
            lm_ppo.placed = real_placed
        assert ("reference", trainer.device, offload) in calls and ("reward model", trainer.device, offload) in calls
        results.append(batch.kl)
        home = "cpu" if offload else trainer.device.type
        assert next(trainer.reference.parameters()).device.type == home and next(reward_model.model.parameters()).device.type == home
    torch.testing.assert_close(results[0], results[1])


# ---------------------------------------------------------------- output
def test_transformers_progress_bars_stay_off(saved_model, tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    from ppokit.lm.sft import SFTTrainer

    hf_logging.enable_progress_bar()  # as a user's own script may leave it
    tokenizer = load_tokenizer(saved_model)
    hf_logging.enable_progress_bar()
    model = load_causal_lm(saved_model, tokenizer)
    hf_logging.enable_progress_bar()
    rows = [{"prompt": "3 1 2 =", "completion": "1 2 3"}] * 4
    SFTTrainer(SFTConfig.from_dict({"model": str(saved_model), "epochs": 1, "batch_size": 2, "tensorboard": False}), run_dir=tmp_path,
               model=model, tokenizer=tokenizer, train_rows=rows, eval_rows=rows[:1], progress=False, verbose=False).train()
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err, err
    assert (tmp_path / "model" / "model.safetensors").is_file()
