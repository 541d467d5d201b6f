"""Norm and value clipping against torch.nn.utils.clip_grad_norm_ / clip_grad_value_."""
import math

import pytest
import torch

from seqcourse.ops.clipping import clip_by_norm, clip_by_value, clip_grad_norm_, clip_grad_value_, global_norm


def _params_with_grads(grads, device="cpu"):
    params = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros_like(g, device=device))
        p.grad = g.clone().to(device)
        params.append(p)
    return params


CASES = {
    "large": [torch.tensor([3.0, 4.0]), torch.tensor([[12.0]])],  # norm 13
    "already small": [torch.tensor([0.1, -0.2]), torch.tensor([[0.05]])],
    "zero": [torch.zeros(3), torch.zeros(2, 2)],
    "random": [10 * torch.randn(4, 5, generator=torch.Generator().manual_seed(0)),
               torch.randn(7, generator=torch.Generator().manual_seed(1))],
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("max_norm", [0.5, 1.0, 100.0])
def test_clip_grad_norm_matches_torch(device, name, max_norm):
    ours = _params_with_grads(CASES[name], device)
    theirs = _params_with_grads(CASES[name], device)
    norm = clip_grad_norm_(ours, max_norm)
    expected_norm = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert norm.item() == pytest.approx(expected_norm.item(), rel=1e-6)
    for p, q in zip(ours, theirs):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7)
        assert torch.isfinite(p.grad).all()


def test_clip_grad_norm_equation():
    params = _params_with_grads(CASES["large"])
    norm = clip_grad_norm_(params, 1.0)
    assert norm.item() == pytest.approx(13.0)
    assert global_norm([p.grad for p in params]).item() == pytest.approx(1.0)
    assert torch.allclose(params[0].grad, torch.tensor([3.0, 4.0]) / 13)  # same direction
    # Already small: left exactly as it was. Zero: stays zero (no 0/0).
    small = _params_with_grads(CASES["already small"])
    clip_grad_norm_(small, 1.0)
    assert torch.equal(small[0].grad, CASES["already small"][0])
    zero = _params_with_grads(CASES["zero"])
    assert clip_grad_norm_(zero, 1.0).item() == 0.0
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in zero)


def test_clip_grad_norm_skips_missing_grads_and_nonfinite():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    a.grad = torch.tensor([6.0, 8.0])
    assert clip_grad_norm_([a, b], 5.0).item() == pytest.approx(10.0)
    assert torch.allclose(a.grad, torch.tensor([3.0, 4.0])) and b.grad is None
    a.grad = torch.tensor([math.inf, 1.0])
    assert math.isinf(clip_grad_norm_([a], 1.0).item())
    assert a.grad[1].item() == 1.0  # nothing was rescaled


def test_clip_by_norm_is_pure_and_keeps_structure():
    g = torch.tensor([3.0, 4.0])
    clipped = clip_by_norm(g, 2.5)
    assert torch.allclose(clipped, torch.tensor([1.5, 2.0])) and torch.equal(g, torch.tensor([3.0, 4.0]))
    grads = [torch.tensor([3.0]), torch.tensor([4.0])]
    out = clip_by_norm(grads, 1.0)
    assert isinstance(out, list) and torch.allclose(torch.cat(out), torch.tensor([0.6, 0.8]))
    # Global, not per tensor: clipping each tensor to 1 separately would leave [1, 1].
    assert not torch.allclose(torch.cat(out), torch.tensor([1.0, 1.0]))
    assert torch.equal(clip_by_norm(torch.zeros(3), 1.0), torch.zeros(3))


def test_clip_by_value_matches_torch_and_changes_direction(device):
    grads = [torch.tensor([0.1, -3.0, 2.0]), torch.tensor([[0.5, -0.05]])]
    ours = _params_with_grads(grads, device)
    theirs = _params_with_grads(grads, device)
    clip_grad_value_(ours, 0.5)
    torch.nn.utils.clip_grad_value_(theirs, 0.5)
    for p, q in zip(ours, theirs):
        assert torch.equal(p.grad, q.grad)
    clipped = clip_by_value(grads[0], 0.5)
    assert torch.equal(clipped, torch.tensor([0.1, -0.5, 0.5]))
    cosine = torch.nn.functional.cosine_similarity(clipped, grads[0], dim=0)
    assert cosine.item() < 0.99  # value clipping turns the gradient; norm clipping does not
    by_norm = clip_by_norm(grads[0], 0.5)
    assert torch.nn.functional.cosine_similarity(by_norm, grads[0], dim=0).item() == pytest.approx(1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        clip_by_norm(torch.ones(2), 0.0)
    with pytest.raises(TypeError, match="number"):
        clip_grad_norm_([torch.nn.Parameter(torch.ones(2))], "1")
    with pytest.raises(TypeError, match="floating-point"):
        clip_by_norm([torch.ones(2, dtype=torch.long)], 1.0)
    with pytest.raises(TypeError, match="tensors"):
        clip_grad_value_([1.0], 1.0)
    with pytest.raises(ValueError, match="clip_value must be > 0"):
        clip_by_value(torch.ones(2), -1.0)
