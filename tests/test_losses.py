import math

import pytest
import torch

from ppokit.core import (
    clipped_surrogate,
    explained_variance,
    kl_k1,
    kl_k3,
    masked_mean,
    masked_var,
    masked_whiten,
    value_loss,
)


def test_masked_mean_and_var_ignore_padding():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, -50.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.5)
    assert masked_var(x, mask).item() == pytest.approx(torch.tensor([1.0, 2, 3, 4]).var().item())
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(1.25)


def test_masked_whiten_has_zero_mean_unit_std_on_real_steps():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 7, generator=gen) * 3 + 5
    mask = (torch.rand(6, 7, generator=gen) > 0.3).float()
    w = masked_whiten(x, mask)
    assert masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_var(w, mask).item() == pytest.approx(1.0, rel=1e-4)
    kept = masked_whiten(x, mask, shift_mean=False)
    assert masked_mean(kept, mask).item() == pytest.approx(masked_mean(x, mask).item(), rel=1e-5)


def test_whiten_single_element_is_finite():
    assert torch.isfinite(masked_whiten(torch.tensor([3.0]))).all()


def test_kl_estimators_hand_computed():
    logp = torch.tensor([math.log(0.5), math.log(0.2)])
    ref = torch.tensor([math.log(0.25), math.log(0.4)])
    torch.testing.assert_close(kl_k1(logp, ref), torch.tensor([math.log(2.0), math.log(0.5)]))
    # k3 = (r - 1) - log r with r = ref/p: r = 0.5 -> 0.5 - 1 + log 2; r = 2 -> 1 - log 2
    torch.testing.assert_close(kl_k3(logp, ref), torch.tensor([-0.5 + math.log(2.0), 1.0 - math.log(2.0)]))
    assert (kl_k3(logp, ref) >= 0).all()


def test_clipped_surrogate_clips_ratio_in_the_pessimistic_direction():
    old = torch.zeros(4)
    new = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5]))
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    loss, stats = clipped_surrogate(new, old, adv, clip_range=0.2)
    # per element: -min(r A, clip(r) A) = [-1.2, 1.5, -0.5, 0.8]
    assert loss.item() == pytest.approx((-1.2 + 1.5 - 0.5 + 0.8) / 4)
    assert stats["clipfrac"].item() == pytest.approx(1.0)
    grads = torch.autograd.grad(clipped_surrogate(new.requires_grad_(), old, adv, 0.2)[0], new)[0]
    # clipped terms pass no gradient
    assert grads[0].item() == 0.0 and grads[3].item() == 0.0
    assert grads[1].item() != 0.0 and grads[2].item() != 0.0


def test_ratio_one_gives_zero_kl_and_no_clipping():
    logp = torch.randn(10)
    _, stats = clipped_surrogate(logp, logp.clone(), torch.randn(10), 0.2)
    assert stats["approx_kl"].item() == 0.0
    assert stats["old_approx_kl"].item() == 0.0
    assert stats["clipfrac"].item() == 0.0
    assert stats["ratio_max_deviation"].item() == 0.0


def test_value_loss_clipping_takes_the_larger_error():
    old = torch.tensor([0.0, 0.0])
    new = torch.tensor([1.0, -0.1])
    returns = torch.tensor([2.0, 0.0])
    unclipped, _ = value_loss(new, old, returns)
    assert unclipped.item() == pytest.approx((1.0 + 0.01) / 2)
    clipped, _ = value_loss(new, old, returns, clip_range_vf=0.2)
    # element 0: clipped value 0.2 -> error 3.24 > 1.0
    assert clipped.item() == pytest.approx((3.24 + 0.01) / 2)


def test_explained_variance():
    returns = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(returns, returns) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), returns) == pytest.approx(0.0)
    assert math.isnan(explained_variance(returns, torch.ones(4)))


def test_explained_variance_takes_numpy_arrays_and_masks():
    import numpy as np

    returns = np.array([1.0, 2.0, 3.0, 4.0, 100.0], dtype=np.float32)
    values = np.array([1.0, 2.0, 3.0, 4.0, -50.0], dtype=np.float32)
    mask = np.array([1, 1, 1, 1, 0], dtype=np.float32)
    assert explained_variance(values, returns, mask) == pytest.approx(1.0)  # the masked step is ignored
    assert explained_variance(values, returns) < 0.5
    assert explained_variance(values, returns) == pytest.approx(explained_variance(torch.from_numpy(values), torch.from_numpy(returns)))
