"""Hand-derived BPTT against autograd, finite differences, and an independent truncation reference."""
import pytest
import torch

from seqcourse.ops.bptt import rnn_bptt, rnn_forward
from seqcourse.models.rnn import RNN

B, T, D, H = 2, 7, 3, 4
NAMES = ("W_x", "W_h", "b", "h0", "x")


def _problem(device="cpu", seed=0, t=T):
    g = torch.Generator().manual_seed(seed)
    def r(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(device)
    params = {"W_x": r(H, D, scale=0.7), "W_h": r(H, H, scale=0.7), "b": r(H, scale=0.3),
              "h0": r(B, H, scale=0.5), "x": r(B, t, D)}
    dL_dh = r(B, t, H)
    return params, dL_dh


def _args(p):
    return p["W_x"], p["W_h"], p["b"], p["x"], p["h0"]


def _autograd(params, dL_dh, forward):
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    h = forward(leaves)
    grads = torch.autograd.grad((h * dL_dh).sum(), [leaves[k] for k in NAMES])
    return dict(zip(NAMES, grads))


def test_forward_matches_rnn_module():
    params, _ = _problem()
    model = RNN(D, H).double()
    with torch.no_grad():
        model.cells[0].W_x.copy_(params["W_x"])
        model.cells[0].W_h.copy_(params["W_h"])
        model.cells[0].b.copy_(params["b"])
    out, _ = model(params["x"], params["h0"].unsqueeze(0))
    torch.testing.assert_close(rnn_forward(*_args(params)), out)


def test_full_bptt_equals_autograd(device):
    params, dL_dh = _problem(device)
    ours = rnn_bptt(*_args(params), dL_dh)
    ref = _autograd(params, dL_dh, lambda p: rnn_forward(*_args(p)))
    assert set(ours) == set(NAMES)
    for k in NAMES:
        assert ours[k].shape == params[k].shape
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-10, atol=1e-12)


def test_full_bptt_equals_finite_differences():
    params, dL_dh = _problem(seed=1, t=3)
    ours = rnn_bptt(*_args(params), dL_dh)
    eps = 1e-6

    def loss(p):
        return (rnn_forward(*_args(p)) * dL_dh).sum().item()

    for k in NAMES:
        numeric = torch.zeros_like(params[k])
        for i in range(params[k].numel()):
            plus = {n: v.clone() for n, v in params.items()}
            minus = {n: v.clone() for n, v in params.items()}
            plus[k].view(-1)[i] += eps
            minus[k].view(-1)[i] -= eps
            numeric.view(-1)[i] = (loss(plus) - loss(minus)) / (2 * eps)
        torch.testing.assert_close(ours[k], numeric, rtol=1e-6, atol=1e-8)


def _truncated_reference(p, k):
    """h_t recomputed from a *detached* h_{t-k} (or from h0 itself when t <= k), so autograd
    lets the gradient of h_t flow back through exactly min(t, k) steps."""
    W_x, W_h, b, x, h0 = _args(p)
    xs = x.unbind(1)
    with torch.no_grad():
        full = [h0] + list(rnn_forward(W_x, W_h, b, x, h0).unbind(1))  # full[t] = h_t, t = 0..T
    outs = []
    for t in range(1, T + 1):
        start = max(0, t - k)
        h = h0 if start == 0 else full[start].detach()
        for s in range(start, t):
            h = torch.tanh(xs[s] @ W_x.T + h @ W_h.T + b)
        outs.append(h)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_truncated_bptt_equals_detached_autograd(k, device):
    params, dL_dh = _problem(device, seed=2)
    ours = rnn_bptt(*_args(params), dL_dh, truncate=k)
    ref = _autograd(params, dL_dh, lambda p: _truncated_reference(p, k))
    for name in NAMES:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-10, atol=1e-12)
    full = rnn_bptt(*_args(params), dL_dh)
    assert not torch.allclose(ours["W_h"], full["W_h"])  # truncation does change the gradient
    if k < T:
        # The first step's input is out of reach of every late term's window.
        assert (ours["x"][:, 0] - full["x"][:, 0]).abs().max() > 1e-6


def test_truncate_none_equals_truncate_t():
    params, dL_dh = _problem(seed=3)
    full = rnn_bptt(*_args(params), dL_dh)
    for k in (T, T + 5):
        cut = rnn_bptt(*_args(params), dL_dh, truncate=k)
        for name in NAMES:
            torch.testing.assert_close(cut[name], full[name], rtol=1e-12, atol=1e-13)


def test_inputs_not_modified():
    params, dL_dh = _problem(seed=4)
    copies = {k: v.clone() for k, v in params.items()}
    rnn_bptt(*_args(params), dL_dh.clone(), truncate=2)
    rnn_bptt(*_args(params), dL_dh)
    for k in NAMES:
        assert torch.equal(params[k], copies[k])


def test_shape_errors():
    p, dL_dh = _problem()
    with pytest.raises(ValueError, match=r"dL_dh must be a float64 tensor of shape \(B=2, T=7, H=4\); got shape \(2, 6, 4\)"):
        rnn_bptt(*_args(p), dL_dh[:, :6])
    with pytest.raises(ValueError, match=r"h0 must be a float64 tensor of shape \(B=2, H=4\); got shape \(3, 4\)"):
        rnn_bptt(p["W_x"], p["W_h"], p["b"], p["x"], torch.zeros(3, H, dtype=torch.float64), dL_dh)
    with pytest.raises(ValueError, match=r"x must be a float64 tensor of shape \(B, T, D=3\); got shape \(2, 7, 5\)"):
        rnn_forward(p["W_x"], p["W_h"], p["b"], torch.zeros(B, T, 5, dtype=torch.float64), p["h0"])
    with pytest.raises(ValueError, match=r"W_h must be a float64 tensor of shape \(H=4, H=4\); got shape \(4, 3\)"):
        rnn_forward(p["W_x"], p["W_h"][:, :3], p["b"], p["x"], p["h0"])
    with pytest.raises(TypeError, match=r"x must have dtype torch\.float64 \(the dtype of W_x\); got dtype torch\.float32"):
        rnn_forward(p["W_x"], p["W_h"], p["b"], p["x"].float(), p["h0"])
    with pytest.raises(ValueError, match=r"truncate must be >= 1; got 0"):
        rnn_bptt(*_args(p), dL_dh, truncate=0)
