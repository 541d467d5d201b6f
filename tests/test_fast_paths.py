"""The fused-kernel fast paths of RNN, LSTM and GRU (``fast=True``) against the readable Python loops:
same outputs, final states and gradients (inputs, initial states, every parameter), for 1 and 2
layers, with and without bias and initial state, in float64 and in float32 (where CPU torch runs
the LSTM through oneDNN's kernel and the GRU and RNN through its generic kernel, so the float32
comparison checks two different kernels against the loop), on every device; a backward pass after
model.eval(); plus the switch itself."""
import contextlib

import pytest
import torch

from seqcourse.models.gated import GRU, LSTM
from seqcourse.models.rnn import RNN

pytestmark = pytest.mark.usefixtures("one_thread")

B, T, D, H = 3, 7, 4, 5
MODELS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def _state(kind, num_layers, dtype, device):
    shape = (num_layers, B, H)
    if kind == "lstm":
        return tuple(torch.randn(*shape, dtype=dtype, device=device).requires_grad_() for _ in range(2))
    return torch.randn(*shape, dtype=dtype, device=device).requires_grad_()


def _flat(state):
    return list(state) if isinstance(state, tuple) else [state]


def _fresh_leaves(state):
    """A new leaf copy of a state (a tensor or an LSTM pair), so each path gets its own .grad."""
    if state is None:
        return None
    leaves = [s.detach().clone().requires_grad_() for s in _flat(state)]
    return tuple(leaves) if isinstance(state, tuple) else leaves[0]


@contextlib.contextmanager
def _no_tf32():
    """float32 without TF32 in cuDNN and in matrix multiplies, so on a GPU the fused kernel and the
    readable loop both compute in full float32 (with TF32 the loop's matmuls keep 10 mantissa bits)."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def _run(model, x, state, fast):
    """Forward + backward of a fixed random weighting of every output; returns values and grads."""
    model.fast = fast
    model.zero_grad()
    x = x.detach().clone().requires_grad_()
    state = _fresh_leaves(state)
    out, final = model(x, state)
    g = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)).sum()
    for s in _flat(final):
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype).to(s.device)).sum()
    loss.backward()
    grads = {"x": x.grad}
    if state is not None:
        grads.update({f"state{i}": s.grad for i, s in enumerate(_flat(state))})
    grads.update({name: p.grad.clone() for name, p in model.named_parameters()})
    return out.detach(), [s.detach() for s in _flat(final)], grads


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_state", [True, False])
def test_fast_equals_readable_float64(kind, num_layers, bias, with_state, device):
    torch.manual_seed(0)
    model = MODELS[kind](D, H, num_layers=num_layers, bias=bias).to(device, torch.float64)
    x = torch.randn(B, T, D, dtype=torch.float64, device=device)
    state = _state(kind, num_layers, torch.float64, device) if with_state else None
    out_r, final_r, grads_r = _run(model, x, state, fast=False)
    out_f, final_f, grads_f = _run(model, x, state, fast=True)
    assert out_f.shape == (B, T, H)
    torch.testing.assert_close(out_f, out_r)
    assert len(final_f) == len(final_r)
    for a, b in zip(final_f, final_r):
        assert a.shape == (num_layers, B, H)
        torch.testing.assert_close(a, b)
    assert grads_f.keys() == grads_r.keys()
    for name in grads_r:
        assert grads_f[name] is not None, name
        torch.testing.assert_close(grads_f[name], grads_r[name], msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_fast_equals_readable_float32(kind, device):
    """float32: the LSTM takes oneDNN's kernel on CPU (the GRU and RNN torch's generic one), every
    model cuDNN on CUDA; TF32 is off for both paths, so like is compared with like."""
    torch.manual_seed(0)
    model = MODELS[kind](D, 16, num_layers=2).to(device)
    x = torch.randn(4, 30, D, device=device)
    with _no_tf32():
        out_r, final_r, grads_r = _run(model, x, None, fast=False)
        out_f, final_f, grads_f = _run(model, x, None, fast=True)
    torch.testing.assert_close(out_f, out_r, atol=1e-5, rtol=1e-4)
    for a, b in zip(final_f, final_r):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for name in grads_r:
        torch.testing.assert_close(grads_f[name], grads_r[name], atol=1e-4, rtol=1e-3)


def test_gru_fast_path_keeps_the_text_convention(device):
    """With the update gate forced to z = 1 (take the candidate), h_1 is the candidate tanh(...):
    the fast path must not silently switch to torch's convention (where z = 1 keeps h_0)."""
    model = GRU(D, H, fast=True).to(device, torch.float64)
    with torch.no_grad():
        model.cells[0].b_x[H:2 * H] = 50.0  # z = σ(50) = 1
    h0 = torch.randn(1, 2, H, dtype=torch.float64, device=device)
    x = torch.randn(2, 1, D, dtype=torch.float64, device=device)
    out, _ = model(x, h0)
    cell = model.cells[0]
    a = x[:, 0] @ cell.W_x.T + cell.b_x
    m = h0[0] @ cell.W_h.T + cell.b_h
    r = torch.sigmoid(a[:, :H] + m[:, :H])
    candidate = torch.tanh(a[:, 2 * H:] + r * m[:, 2 * H:])
    torch.testing.assert_close(out[:, 0], candidate)
    assert not torch.allclose(out[:, 0], h0[0])


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_fast_switch(kind):
    model = MODELS[kind](D, H)
    assert model.fast is False and "fast=False" in repr(model)
    model.fast = True
    assert model.fast is True and "fast=True" in repr(model)
    assert MODELS[kind](D, H, fast=True).fast is True
    with pytest.raises(TypeError, match="fast must be True or False"):
        model.fast = 1
    with pytest.raises(TypeError, match="fast must be True or False"):
        MODELS[kind](D, H, fast="yes")


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_fast_path_checks_inputs_like_the_readable_one(kind):
    model = MODELS[kind](D, H, fast=True)
    with pytest.raises(ValueError, match="D=4"):
        model(torch.randn(B, T, D + 1))


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_step_matches_fast_forward(kind, device):
    """step() stays the readable cell; carried over the sequence it gives the fast forward's outputs."""
    torch.manual_seed(0)
    model = MODELS[kind](D, H, num_layers=2, fast=True).to(device, torch.float64)
    x = torch.randn(B, T, D, dtype=torch.float64, device=device)
    out, final = model(x)
    state, ys = None, []
    for x_t in x.unbind(1):
        y_t, state = model.step(x_t, state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), out)
    for a, b in zip(_flat(state), _flat(final)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_fast_path_backward_after_eval(kind, device, monkeypatch):
    """After model.eval() gradients still flow (cuDNN's inference kernel keeps nothing for a backward
    pass, so the kernel must be told train=True whenever autograd records) and equal the readable
    loop's; under torch.no_grad() in eval mode the kernel gets train=False. Outputs are the same."""
    torch.manual_seed(0)
    model = MODELS[kind](D, H, num_layers=2).to(device, torch.float64).eval()
    x = torch.randn(B, T, D, dtype=torch.float64, device=device)
    flags = []
    original = model._call_fused

    def recording(kernel, *args):
        def kernel_that_records(*kernel_args):
            flags.append(kernel_args[-3])  # (..., dropout, train, bidirectional, batch_first)
            return kernel(*kernel_args)

        return original(kernel_that_records, *args)

    monkeypatch.setattr(model, "_call_fused", recording)
    out_r, final_r, grads_r = _run(model, x, None, fast=False)
    out_f, final_f, grads_f = _run(model, x, None, fast=True)
    assert flags == [True]
    torch.testing.assert_close(out_f, out_r)
    for name in grads_r:
        torch.testing.assert_close(grads_f[name], grads_r[name], msg=lambda m: f"{name}: {m}")
    with torch.no_grad():
        out_ng, _ = model(x)
    assert flags == [True, False]
    torch.testing.assert_close(out_ng, out_f)
    model.train()
    with torch.no_grad():
        model(x)
    assert flags == [True, False, True]  # training mode keeps the old flag
