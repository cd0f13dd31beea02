"""The core's advantage estimators and loss aggregations against computations written out by hand.

One small batch serves every estimator: two groups of three responses (one of unequal rewards, one whose
rewards are all equal) of unequal lengths, so padding, the group statistics and the equal-rewards case
are each exercised."""

import math

import pytest
import torch

from ppokit.core.estimators import ADVANTAGE_ESTIMATORS, AdvantageInputs, estimate_advantages, register_estimator
from ppokit.core.losses import clipped_surrogate, loss_aggregation, reference_kl_penalty
from ppokit.core.settings import UpdateSettings
from ppokit.core.update import ppo_update

EPS = 1e-6
LENGTHS = [3, 1, 2, 3, 2, 1]
SCORES = [1.0, 0.0, 0.5, 0.2, 0.2, 0.2]  # group 0: unequal, group 1: all equal
KL = 0.1  # a per-token KL penalty on every real token (for the estimators that read per-token rewards)


def batch(kl_in_reward: bool = False) -> AdvantageInputs:
    mask = torch.tensor([[1.0] * n + [0.0] * (3 - n) for n in LENGTHS])
    rewards = torch.zeros(6, 3)
    if kl_in_reward:
        rewards -= KL * mask
    for row, n in enumerate(LENGTHS):
        rewards[row, n - 1] += SCORES[row]
    return AdvantageInputs(rewards, torch.tensor(SCORES), mask, group_ids=torch.tensor([0, 0, 0, 1, 1, 1]), gamma=1.0)


def per_token(values: list[float]) -> torch.Tensor:
    """A per-sequence value on each real token, 0 on padding."""
    return torch.tensor([[values[row]] * n + [0.0] * (3 - n) for row, n in enumerate(LENGTHS)])


def test_grpo_divides_by_the_groups_sample_std_and_gives_an_equal_group_zero():
    advantages, returns = estimate_advantages("grpo", batch())
    std = math.sqrt(((1 - 0.5) ** 2 + (0 - 0.5) ** 2 + 0.0) / 2)  # sample std (n - 1) of [1, 0, 0.5]: 0.5
    expected = per_token([0.5 / (std + EPS), -0.5 / (std + EPS), 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected)
    assert torch.isfinite(advantages).all()


def test_dr_grpo_subtracts_the_group_mean_only():
    advantages, _ = estimate_advantages("dr_grpo", batch())
    torch.testing.assert_close(advantages, per_token([0.5, -0.5, 0.0, 0.0, 0.0, 0.0]))


def test_rloo_leaves_each_sample_out_of_its_baseline():
    advantages, _ = estimate_advantages("rloo", batch())
    # 1 - mean(0, 0.5); 0 - mean(1, 0.5); 0.5 - mean(1, 0); the equal group: 0.2 - 0.2
    torch.testing.assert_close(advantages, per_token([0.75, -0.75, 0.0, 0.0, 0.0, 0.0]))


def _whiten(rows: list[list[float]]) -> torch.Tensor:
    """Whitening over every real token of the batch, by hand (mean, Bessel-corrected variance, + 1e-8)."""
    real = [v for row in rows for v in row]
    mean = sum(real) / len(real)
    std = math.sqrt(sum((v - mean) ** 2 for v in real) / (len(real) - 1) + 1e-8)
    return torch.tensor([[(v - mean) / std for v in row] + [0.0] * (3 - len(row)) for row in rows])


def test_reinforce_plus_plus_whitens_the_returns_to_go_of_the_per_token_rewards():
    advantages, returns = estimate_advantages("reinforce++", batch(kl_in_reward=True))
    # rewards-to-go with gamma 1: each token gets the score minus the KL of itself and every later token
    to_go = [[s - KL * (n - t) for t in range(n)] for s, n in zip(SCORES, LENGTHS)]
    torch.testing.assert_close(returns, torch.tensor([row + [0.0] * (3 - len(row)) for row in to_go]))
    torch.testing.assert_close(advantages, _whiten(to_go))


def test_reinforce_plus_plus_baseline_subtracts_the_group_mean_score_first():
    advantages, returns = estimate_advantages("reinforce++-baseline", batch(kl_in_reward=True))
    means = [0.5, 0.5, 0.5, 0.2, 0.2, 0.2]
    to_go = [[s - m - KL * (n - t) for t in range(n)] for s, m, n in zip(SCORES, means, LENGTHS)]
    torch.testing.assert_close(returns, torch.tensor([row + [0.0] * (3 - len(row)) for row in to_go]))
    torch.testing.assert_close(advantages, _whiten(to_go))


def test_group_estimators_read_the_kl_penalty_in_the_reward_as_part_of_each_sequence_return():
    advantages, _ = estimate_advantages("dr_grpo", batch(kl_in_reward=True))
    totals = [s - KL * n for s, n in zip(SCORES, LENGTHS)]
    means = [sum(totals[:3]) / 3] * 3 + [sum(totals[3:]) / 3] * 3
    torch.testing.assert_close(advantages, per_token([t - m for t, m in zip(totals, means)]))


def test_a_new_estimator_is_one_function_and_one_registration():
    @register_estimator("constant-test")
    def constant(inputs):
        """A = 1 on every real token."""
        return torch.ones_like(inputs.mask), torch.ones_like(inputs.mask)

    try:
        advantages, _ = estimate_advantages("constant-test", batch())
        torch.testing.assert_close(advantages, batch().mask)  # padding zeroed by the registry, not the estimator
    finally:
        del ADVANTAGE_ESTIMATORS["constant-test"]
    with pytest.raises(ValueError, match=r"unknown advantage estimator 'nope'; expected one of \['dr_grpo', 'gae', 'grpo'"):
        estimate_advantages("nope", batch())
    with pytest.raises(ValueError, match="needs values"):
        estimate_advantages("gae", batch())
    assert {name for name, e in ADVANTAGE_ESTIMATORS.items() if e.needs_values} == {"gae"}


# ---------------------------------------------------------------- loss aggregation
def test_the_three_loss_aggregations_give_their_hand_computed_values_on_unequal_lengths():
    losses = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [5.0, 6.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    token_mean, tokens = loss_aggregation(mask, "token-mean")
    seq_mean, sequences = loss_aggregation(mask, "seq-mean-token-mean")
    sum_norm, _ = loss_aggregation(mask, "seq-mean-token-sum-norm", horizon=4)
    assert float(token_mean(losses)) == pytest.approx(21 / 6) and float(tokens) == 6
    assert float(seq_mean(losses)) == pytest.approx((2.0 + 4.0 + 5.5) / 3) and float(sequences) == 3
    assert float(sum_norm(losses)) == pytest.approx((6 / 4 + 4 / 4 + 11 / 4) / 3)
    assert len({round(float(f(losses)), 6) for f in (token_mean, seq_mean, sum_norm)}) == 3


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_gradient_accumulation_gives_the_same_update_under_every_aggregation(mode):
    """Batch 8 x accumulation 1 equals batch 8 split into 2 micro-batches: each micro-batch is weighted by its units."""
    results = []
    for accumulation in (1, 2):
        torch.manual_seed(0)
        logits = torch.nn.Parameter(torch.randn(8, 5))
        optimizer = torch.optim.SGD([logits], lr=0.1)
        lengths = torch.tensor([5, 1, 3, 2, 5, 4, 1, 2])
        mask = (torch.arange(5).unsqueeze(0) < lengths.unsqueeze(1)).float()
        generator = torch.Generator().manual_seed(1)
        samples = {"rows": torch.arange(8), "mask": mask, "advantages": torch.randn(8, 5, generator=generator) * mask,
                   "logprobs": torch.full((8, 5), -0.1)}
        settings = UpdateSettings(n_epochs=1, minibatch_size=8, max_grad_norm=None, normalize_advantage=False, grad_accum_steps=accumulation,
                                  loss_aggregation=mode, aggregation_horizon=5)
        def evaluate(mb, logits=logits):
            return torch.log_softmax(logits[mb["rows"]], -1), torch.zeros(len(mb["rows"]), 5), None

        ppo_update(evaluate, optimizer, [logits], samples, settings, order=lambda epoch: torch.arange(8))
        results.append(logits.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-7)
    assert not torch.equal(results[0], torch.randn(8, 5, generator=torch.Generator().manual_seed(0)))


# ---------------------------------------------------------------- clip-higher, the KL term, an update without values
def test_clip_range_high_lets_a_ratio_rise_further_than_clip_range():
    old = torch.zeros(4)
    new = torch.log(torch.tensor([1.1, 1.25, 1.35, 0.7])).requires_grad_()
    advantages = torch.ones(4)
    loss, stats = clipped_surrogate(new, old, advantages, clip_range=0.2, clip_range_high=0.28)
    loss.backward()
    # positive advantage: a ratio above 1 + high (1.35) is clipped (no gradient); 1.25 is inside [0.8, 1.28] and keeps its gradient
    assert new.grad[0] != 0 and new.grad[1] != 0 and new.grad[2] == 0
    assert float(stats["clipfrac"]) == pytest.approx(2 / 4)  # 1.35 above 1.28, 0.7 below 0.8


def test_kl_term_is_the_k3_estimate_aggregated_like_the_policy_loss():
    logprob = torch.log(torch.tensor([[0.5, 0.2], [0.9, 0.3]]))
    ref = torch.log(torch.tensor([[0.25, 0.4], [0.9, 0.6]]))
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, stats = reference_kl_penalty(logprob, ref, mask)
    k3 = [(0.5 - 1 - math.log(0.5)), (2 - 1 - math.log(2)), 0.0]  # r = ref / p; (r - 1) - log r
    assert float(loss) == pytest.approx(sum(k3) / 3, rel=1e-5) and float(stats["kl"]) == pytest.approx(sum(k3) / 3, rel=1e-5)


def test_update_without_values_or_old_logprobs_has_ratio_one_and_moves_toward_the_reference():
    torch.manual_seed(0)
    logits = torch.nn.Parameter(torch.randn(4, 3, 6))
    actions = torch.randint(0, 6, (4, 3))
    reference = torch.log_softmax(torch.randn(4, 3, 6), -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    samples = {"rows": torch.arange(4), "mask": torch.ones(4, 3), "advantages": torch.zeros(4, 3), "ref_logprobs": reference}

    def evaluate(mb):
        logprob = torch.log_softmax(logits[mb["rows"]], -1).gather(-1, actions[mb["rows"]].unsqueeze(-1)).squeeze(-1)
        return logprob, torch.zeros_like(logprob), None

    def kl_now():
        with torch.no_grad():
            return float(reference_kl_penalty(evaluate(samples)[0], reference)[0])

    before = kl_now()
    stats = ppo_update(evaluate, torch.optim.Adam([logits], lr=0.05), [logits], samples,
                       UpdateSettings(n_epochs=1, minibatch_size=2, kl_loss_coef=1.0, normalize_advantage=False), order=lambda e: torch.arange(4))
    assert stats["first_ratio_deviation"] == 0.0 and stats["value_loss"] == 0.0
    assert stats["kl"] > 0 and kl_now() < before  # with zero advantages only the KL term moves the policy: toward the reference
