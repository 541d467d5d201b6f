"""Questions for the Recurrence chapter: one RNN step, the unrolled RNN, and backprop through time.

Symbols as in the chapter: a batch of B sequences of length T, inputs x_t with D features, hidden
states h_t with H features, and

    h_t = tanh(W_x x_t + W_h h_{t-1} + b),   W_x (H, D), W_h (H, H), b (H,).

In code each row of ``x_t`` (B, D) is one example, so the batched step reads
``tanh(x_t @ W_x.T + h_prev @ W_h.T + b)``.

The references do not use that formula: the step and the unroll run ``torch.nn.RNNCell`` and
``torch.nn.RNN`` with the weights copied in (``weight_ih = W_x``, ``weight_hh = W_h``,
``bias_ih = b``, ``bias_hh = 0``), and the gradient comes from autograd through ``torch.nn.RNN``.
They compute in float64, so a check measures the student's error alone.

The cases are drawn so that the classic mistakes fail at least one case: a transposed weight
(W_x is not square in most cases, W_h is never symmetric), a missing bias (b != 0), an
off-by-one unroll (returning h_0 ... h_{T-1}: h_0 != 0 and T = 1 cases), a sign error, a
gradient without the recursive term (T > 1) or averaged over the batch (B > 1).
"""
from __future__ import annotations

import torch

from ..registry import Case, Question

# The chapter's worked example: H = 2, D = 1, inputs 1, -1, 2, h_0 = 0, b = 0.
WORKED_W_H = [[0.5, 0.1], [0.2, 0.6]]
WORKED_W_X = [[0.3], [0.4]]
WORKED_INPUTS = [1.0, -1.0, 2.0]


def _tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _randn(generator: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=generator, dtype=torch.float32)


def _random_weights(generator: torch.Generator, D: int, H: int) -> dict[str, torch.Tensor]:
    """W_x (H, D), W_h (H, H) scaled so tanh stays away from saturation, and a non-zero b (H,)."""
    return {
        "W_x": _randn(generator, H, D, scale=0.8 / D**0.5),
        "W_h": _randn(generator, H, H, scale=0.8 / H**0.5),
        "b": _randn(generator, H, scale=0.5),
    }


def _worked_weights() -> dict[str, torch.Tensor]:
    return {"W_x": _tensor(WORKED_W_X), "W_h": _tensor(WORKED_W_H), "b": _tensor([0.0, 0.0])}


def _torch_rnn(W_x: torch.Tensor, W_h: torch.Tensor, b: torch.Tensor, cell: bool = False) -> torch.nn.Module:
    """``torch.nn.RNN`` (batch-first) or ``torch.nn.RNNCell`` in float64 holding W_x, W_h, b.

    Built on the meta device and then allocated, so building it draws no random numbers (a check
    must not move the student's random stream)."""
    H, D = W_x.shape
    if cell:
        module = torch.nn.RNNCell(D, H, nonlinearity="tanh", device="meta", dtype=torch.float64)
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    else:
        module = torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True, device="meta", dtype=torch.float64)
        names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    module = module.to_empty(device="cpu")
    with torch.no_grad():
        for name, value in zip(names, (W_x, W_h, b, torch.zeros_like(b))):
            getattr(module, name).copy_(value)
    return module


# ---- rnn-step -------------------------------------------------------------------------------


def _step_reference(x_t, h_prev, W_x, W_h, b):
    with torch.no_grad():
        return _torch_rnn(W_x, W_h, b, cell=True)(x_t.double(), h_prev.double())


def _step_worked_1(g):
    return {"x_t": _tensor([[WORKED_INPUTS[0]]]), "h_prev": _tensor([[0.0, 0.0]]), **_worked_weights()}


def _step_worked_2(g):
    h_1 = torch.tanh(_tensor([[WORKED_W_X[0][0], WORKED_W_X[1][0]]]))  # W_x x_1 with x_1 = 1, h_0 = 0
    return {"x_t": _tensor([[WORKED_INPUTS[1]]]), "h_prev": h_1, **_worked_weights()}


def _step_random(B, D, H):
    def build(g):
        return {"x_t": _randn(g, B, D), "h_prev": _randn(g, B, H, scale=0.5), **_random_weights(g, D, H)}

    return build


RNN_STEP = Question(
    id="rnn-step",
    title="one step, h_t = tanh(W_x x_t + W_h h_{t-1} + b), for a batch",
    points=2,
    args=("x_t", "h_prev", "W_x", "W_h", "b"),
    outputs=("h_t",),
    reference=_step_reference,
    cases=(
        Case("worked example, step 1 (B=1, D=1, H=2, h_0 = 0, b = 0)", _step_worked_1),
        Case("worked example, step 2 (h_1 from step 1, x_2 = -1)", _step_worked_2),
        Case("batch with bias (B=3, D=2, H=4)", _step_random(3, 2, 4), seed=1),
        Case("square W_x (B=2, D=3, H=3)", _step_random(2, 3, 3), seed=2),
    ),
    forbids=("seqcourse", "torch.nn"),  # "plain tensor operations", as the notebook asks
)


# ---- rnn-unroll -----------------------------------------------------------------------------


def _unroll_reference(x, h0, W_x, W_h, b):
    with torch.no_grad():
        outputs, _ = _torch_rnn(W_x, W_h, b)(x.double(), h0.double().unsqueeze(0))
    return outputs


def _unroll_worked(g):
    return {"x": _tensor(WORKED_INPUTS).reshape(1, 3, 1), "h0": _tensor([[0.0, 0.0]]), **_worked_weights()}


def _unroll_random(B, T, D, H):
    def build(g):
        return {"x": _randn(g, B, T, D), "h0": _randn(g, B, H, scale=0.5), **_random_weights(g, D, H)}

    return build


RNN_UNROLL = Question(
    id="rnn-unroll",
    title="all hidden states h_1 ... h_T of a sequence, shape (B, T, H)",
    points=3,
    args=("x", "h0", "W_x", "W_h", "b"),
    outputs=("h",),
    reference=_unroll_reference,
    cases=(
        Case("worked example (B=1, T=3, D=1, H=2; inputs 1, -1, 2; h_0 = 0, b = 0)", _unroll_worked),
        Case("batch with bias and h_0 != 0 (B=2, T=5, D=3, H=4)", _unroll_random(2, 5, 3, 4), seed=3),
        Case("a single step (B=4, T=1, D=2, H=3, h_0 != 0)", _unroll_random(4, 1, 2, 3), seed=4),
    ),
    forbids=("seqcourse", "torch.nn"),  # "plain tensor operations", as the notebook asks
)


# ---- rnn-bptt -------------------------------------------------------------------------------


def _bptt_reference(x, h0, W_x, W_h, b, target):
    rnn = _torch_rnn(W_x, W_h, b)
    with torch.enable_grad():
        h, _ = rnn(x.double(), h0.double().unsqueeze(0))
        loss = 0.5 * (h - target.double()).pow(2).sum()
        return torch.autograd.grad(loss, (rnn.weight_ih_l0, rnn.weight_hh_l0))


def _bptt_worked(g):
    return {
        "x": _tensor(WORKED_INPUTS).reshape(1, 3, 1),
        "h0": _tensor([[0.0, 0.0]]),
        **_worked_weights(),
        "target": _randn(g, 1, 3, 2, scale=0.5),
    }


def _bptt_random(B, T, D, H):
    def build(g):
        inputs = {"x": _randn(g, B, T, D), "h0": _randn(g, B, H, scale=0.5), **_random_weights(g, D, H)}
        return {**inputs, "target": _randn(g, B, T, H, scale=0.5)}

    return build


RNN_BPTT = Question(
    id="rnn-bptt",
    title="dL/dW_x and dL/dW_h by hand for L = 1/2 sum_b sum_t ||h_t - target_t||^2",
    points=4,
    args=("x", "h0", "W_x", "W_h", "b", "target"),
    outputs=("dL_dW_x", "dL_dW_h"),
    reference=_bptt_reference,
    cases=(
        Case("worked-example weights (B=1, T=3, D=1, H=2)", _bptt_worked, seed=5),
        Case("batch with bias and h_0 != 0 (B=3, T=6, D=2, H=4)", _bptt_random(3, 6, 2, 4), seed=6),
        Case("a single step (B=2, T=1, D=3, H=2, h_0 != 0)", _bptt_random(2, 1, 3, 2), seed=7),
        Case("square W_x (B=2, T=4, D=3, H=3)", _bptt_random(2, 4, 3, 3), seed=8),
    ),
    tol=1e-4,
    allow_autograd=False,
)

QUESTIONS = (RNN_STEP, RNN_UNROLL, RNN_BPTT)
