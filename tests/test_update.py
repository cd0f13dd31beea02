import math

import pytest
import torch

from ppokit import PPO
from ppokit.core import UpdateSettings, ppo_update
from ppokit.gym.presets import load_preset


def _first_ratio_deviations(env_id, overrides, updates):
    config = load_preset(env_id)[1] | overrides
    config["total_steps"] = updates * config["n_envs"] * config["n_steps"]
    deviations = []
    PPO(env_id, config, verbose=False, progress_bar=False).learn(callback=lambda m: deviations.append(m["debug/first_ratio_deviation"]))
    return deviations


@pytest.mark.parametrize("env_id,overrides", [("CartPole-v1", {}), ("Pendulum-v1", {"n_steps": 128, "normalize_obs": True, "normalize_reward": True})])
def test_ratio_is_exactly_one_on_first_minibatch_of_every_update(env_id, overrides):
    deviations = _first_ratio_deviations(env_id, overrides, updates=6)
    assert len(deviations) == 6
    assert all(d == 0.0 for d in deviations), deviations


def _linear_problem(n=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    policy = torch.nn.Linear(3, 2)
    value = torch.nn.Linear(3, 1)
    obs = torch.randn(n, 3, generator=gen)
    actions = torch.randint(0, 2, (n,), generator=gen)

    def evaluate(mb):
        logp = torch.log_softmax(policy(mb["obs"]), -1)
        chosen = logp.gather(-1, mb["actions"].unsqueeze(-1)).squeeze(-1)
        return chosen, -(logp.exp() * logp).sum(-1), value(mb["obs"]).squeeze(-1)

    with torch.no_grad():
        logprobs, _, values = evaluate({"obs": obs, "actions": actions})
    samples = {"obs": obs, "actions": actions, "logprobs": logprobs, "values": values,
               "advantages": torch.randn(n, generator=gen), "returns": torch.randn(n, generator=gen)}
    params = list(policy.parameters()) + list(value.parameters())
    return evaluate, params, samples


def test_minibatch_of_one_sample_gives_finite_update():
    evaluate, params, samples = _linear_problem(n=5)
    opt = torch.optim.Adam(params, lr=1e-3)
    stats = ppo_update(evaluate, opt, params, samples, UpdateSettings(n_epochs=2, minibatch_size=1, clip_range=0.2))
    assert stats["num_minibatches"] == 10
    assert all(math.isfinite(v) for k, v in stats.items())
    assert all(torch.isfinite(p).all() for p in params)


def test_target_kl_stops_epochs_early():
    evaluate, params, samples = _linear_problem(n=64)
    opt = torch.optim.SGD(params, lr=5.0)  # a big step makes the KL jump after the first minibatch
    stats = ppo_update(evaluate, opt, params, samples, UpdateSettings(n_epochs=10, minibatch_size=16, clip_range=0.2, target_kl=1e-4, max_grad_norm=None))
    assert stats["stopped_early"] == 1.0
    assert 1 <= stats["num_minibatches"] < 40


def test_gradient_accumulation_matches_one_big_minibatch():
    results = []
    for accum in (1, 4):
        torch.manual_seed(0)
        evaluate, params, samples = _linear_problem(n=32)
        opt = torch.optim.SGD(params, lr=0.1)
        torch.manual_seed(1)
        ppo_update(evaluate, opt, params, samples, UpdateSettings(n_epochs=1, minibatch_size=32, clip_range=0.2, grad_accum_steps=accum, max_grad_norm=None))
        results.append(torch.cat([p.detach().flatten() for p in params]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_gradient_accumulation_with_mask_weights_by_real_steps():
    results = []
    for accum in (1, 2):
        torch.manual_seed(0)
        evaluate, params, samples = _linear_problem(n=16)
        samples["mask"] = torch.tensor([1.0] * 12 + [0.0] * 4)
        opt = torch.optim.SGD(params, lr=0.1)
        torch.manual_seed(1)
        ppo_update(evaluate, opt, params, samples, UpdateSettings(n_epochs=1, minibatch_size=16, clip_range=0.2, grad_accum_steps=accum, max_grad_norm=None))
        results.append(torch.cat([p.detach().flatten() for p in params]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_loss_scaling_gives_the_same_update_and_skips_an_overflow():
    """float16 training scales the loss; the core unscales before clipping, so the update is unchanged."""
    settings = UpdateSettings(n_epochs=2, minibatch_size=8, clip_range=0.2, max_grad_norm=0.5)
    results = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**10)):
        torch.manual_seed(0)
        evaluate, params, samples = _linear_problem()
        opt = torch.optim.Adam(params, lr=1e-2)
        stats = ppo_update(evaluate, opt, params, samples, settings, generator=torch.Generator().manual_seed(1), grad_scaler=scaler)
        results.append(([p.detach().clone() for p in params], stats))
    (plain, plain_stats), (scaled, scaled_stats) = results
    assert scaled_stats["skipped_steps"] == 0 and scaled_stats["grad_norm"] == pytest.approx(plain_stats["grad_norm"], rel=1e-6)
    for a, b in zip(plain, scaled):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)

    # a scale so large that the scaled gradient overflows float32: nothing is applied, the scale halves
    torch.manual_seed(0)
    evaluate, params, samples = _linear_problem()
    samples["returns"] = samples["returns"] * 1e3  # value gradients of ~1e3: times 2**127 is past float32's 3.4e38
    before = [p.detach().clone() for p in params]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    stats = ppo_update(evaluate, torch.optim.Adam(params, lr=1e-2), params, samples, UpdateSettings(n_epochs=1, minibatch_size=32, clip_range=0.2),
                       grad_scaler=scaler)
    assert stats["skipped_steps"] == 1 and stats["num_minibatches"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, params))
    assert scaler.get_scale() == 2.0**126
