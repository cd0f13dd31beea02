import itertools

import pytest
import torch

from ppokit.core import gae, gae_reference, next_values_from


def test_hand_computed_example():
    # One env, 3 steps; the episode is truncated at t=1 (V(final obs) = 5) and a new one runs at t=2.
    gamma, lam = 0.9, 0.5
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [2.0]])
    last_value = torch.tensor([4.0])
    next_values = next_values_from(values, last_value)
    next_values[1, 0] = 5.0  # bootstrap value of the truncated episode's final observation
    terminated = torch.tensor([[False], [False], [False]])
    dones = torch.tensor([[False], [True], [False]])
    adv, ret = gae(rewards, values, next_values, terminated, dones, gamma, lam)
    d2 = 3.0 + 0.9 * 4.0 - 2.0  # 4.6
    d1 = 2.0 + 0.9 * 5.0 - 1.0  # 5.5, trace cut after it
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # 1.4
    expected = torch.tensor([[d0 + 0.45 * d1], [d1], [d2]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_termination_stops_bootstrapping():
    rewards = torch.tensor([[1.0], [1.0]])
    values = torch.tensor([[0.3], [0.7]])
    next_values = torch.tensor([[0.7], [100.0]])
    terminated = torch.tensor([[False], [True]])
    adv, _ = gae(rewards, values, next_values, terminated, terminated, 0.99, 0.95)
    assert adv[1, 0].item() == pytest.approx(1.0 - 0.7)  # V(next) ignored after a real termination
    assert adv[0, 0].item() == pytest.approx((1 + 0.99 * 0.7 - 0.3) + 0.99 * 0.95 * 0.3)


@pytest.mark.parametrize(
    "gamma,lam,num_steps,num_envs,p_done,p_term",
    [
        (g, lam, t, b, pd, pt)
        for (g, lam), (t, b), (pd, pt) in itertools.product(
            [(0.99, 0.95), (1.0, 1.0), (0.9, 0.0), (0.5, 0.7)],
            [(1, 1), (5, 3), (64, 8), (200, 2)],
            [(0.0, 0.0), (0.1, 0.5), (0.3, 1.0), (0.3, 0.0)],
        )
    ],
)
def test_fast_equals_reference(gamma, lam, num_steps, num_envs, p_done, p_term):
    gen = torch.Generator().manual_seed(num_steps * 131 + num_envs)
    rewards = torch.randn(num_steps, num_envs, generator=gen)
    values = torch.randn(num_steps, num_envs, generator=gen)
    next_values = torch.randn(num_steps, num_envs, generator=gen)
    dones = torch.rand(num_steps, num_envs, generator=gen) < p_done
    # terminated is a subset of done: the rest of the done steps are truncations
    terminated = dones & (torch.rand(num_steps, num_envs, generator=gen) < p_term)
    fast_adv, fast_ret = gae(rewards, values, next_values, terminated, dones, gamma, lam)
    ref_adv, ref_ret = gae_reference(rewards, values, next_values, terminated, dones, gamma, lam)
    torch.testing.assert_close(fast_adv, ref_adv, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_ret, ref_ret, rtol=1e-5, atol=1e-5)


def test_done_cuts_trace_between_envs_independently():
    rewards = torch.ones(4, 2)
    values = torch.zeros(4, 2)
    next_values = torch.zeros(4, 2)
    dones = torch.tensor([[False, True], [False, False], [False, True], [False, False]])
    adv, _ = gae(rewards, values, next_values, dones, dones, 1.0, 1.0)
    assert adv[:, 0].tolist() == [4.0, 3.0, 2.0, 1.0]
    assert adv[:, 1].tolist() == [1.0, 2.0, 1.0, 1.0]
