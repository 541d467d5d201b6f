"""Questions for the Gating chapter: one LSTM step, one GRU step in the text's convention, and the
gradient of the cell state along the cell path.

Symbols as in the chapter: x_t (B, D), h_{t-1} and c_{t-1} (B, H). The LSTM's fused parameters
stack the gates in the order i, f, g, o: W_x (4H, D), W_h (4H, H), b (4H,), and

    i_t, f_t, o_t = σ(·),  g_t = tanh(·)  of  W_• x_t + W_• h_{t-1} + b_•,
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t,     h_t = o_t ⊙ tanh(c_t).

The GRU's stack the order r, z, h̃: W_x (3H, D), W_h (3H, H), b_x, b_h (3H,), and

    r_t = σ(W_x^r x_t + b_x^r + W_h^r h_{t-1} + b_h^r),   z_t likewise,
    h̃_t = tanh(W_x^h x_t + b_x^h + r_t ⊙ (W_h^h h_{t-1} + b_h^h)),
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t.

The references take other routes: ``torch.nn.LSTMCell`` and ``torch.nn.GRUCell`` with the
weights copied in (for the GRU, the z rows negated, because torch's update gate is 1 - ours), and
for the cell-state gradient autograd through ``torch.nn.LSTMCell`` fed a detached h_{t-1}. All in
float64. The cases make the usual mistakes fail: a wrong gate order (every case has distinct
gate weights), a forgotten bias, transposed weights (D != H in most cases), c_{t-1} = 0 hiding the
forget gate (never in the random cases), torch's GRU convention (z and 1 - z swapped), the reset
gate applied to h_{t-1} before the matrix product, and a gradient product that skips a step or
uses the input gate.
"""
from __future__ import annotations

import torch

from ..registry import Case, Question

F64 = torch.float64


def _tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=g, dtype=torch.float32)


def _torch_cell(kind, W_x, W_h, bias_ih, bias_hh):
    """``torch.nn.LSTMCell``/``GRUCell`` in float64 holding the given weights; built on the meta
    device and then allocated, so it draws no random numbers."""
    H = W_h.shape[1]
    module = kind(W_x.shape[1], H, device="meta", dtype=F64).to_empty(device="cpu")
    with torch.no_grad():
        for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (W_x, W_h, bias_ih, bias_hh)):
            getattr(module, name).copy_(value.double())
    return module


# ---- lstm-step ------------------------------------------------------------------------------

# The chapter's worked example: D = 1, H = 1, x_1 = 1, h_0 = 0, c_0 = 0.5.
WORKED_LSTM = {"W_x": [[1.0], [2.0], [0.5], [-1.0]], "W_h": [[0.0], [0.0], [0.0], [0.0]],
               "b": [0.0, 1.0, 0.0, 0.0]}


def _lstm_reference(x_t, h_prev, c_prev, W_x, W_h, b):
    with torch.no_grad():
        h, c = _torch_cell(torch.nn.LSTMCell, W_x, W_h, b, torch.zeros_like(b))(
            x_t.double(), (h_prev.double(), c_prev.double()))
    return h, c


def _lstm_worked(g):
    return {"x_t": _tensor([[1.0]]), "h_prev": _tensor([[0.0]]), "c_prev": _tensor([[0.5]]),
            **{k: _tensor(v) for k, v in WORKED_LSTM.items()}}


def _lstm_random(B, D, H):
    def build(g):
        return {"x_t": _randn(g, B, D), "h_prev": _randn(g, B, H, scale=0.5), "c_prev": _randn(g, B, H),
                "W_x": _randn(g, 4 * H, D, scale=0.8 / D**0.5), "W_h": _randn(g, 4 * H, H, scale=0.8 / H**0.5),
                "b": _randn(g, 4 * H, scale=0.5)}

    return build


LSTM_STEP = Question(
    id="lstm-step",
    title="one LSTM step: c_t = f_t * c_{t-1} + i_t * g_t, h_t = o_t * tanh(c_t) (gates i, f, g, o)",
    points=3,
    args=("x_t", "h_prev", "c_prev", "W_x", "W_h", "b"),
    outputs=("h_t", "c_t"),
    reference=_lstm_reference,
    cases=(
        Case("worked example (B=1, D=1, H=1, x_1 = 1, h_0 = 0, c_0 = 0.5)", _lstm_worked),
        Case("a batch with a carried state (B=3, D=2, H=4)", _lstm_random(3, 2, 4), seed=1),
        Case("square W_x (B=2, D=3, H=3)", _lstm_random(2, 3, 3), seed=2),
        Case("one unit (B=4, D=5, H=1)", _lstm_random(4, 5, 1), seed=3),
    ),
    forbids=("seqcourse", "torch.nn"),  # "plain tensor operations", as the notebook asks
)


# ---- gru-step -------------------------------------------------------------------------------


def _gru_reference(x_t, h_prev, W_x, W_h, b_x, b_h):
    """torch.nn.GRUCell with the z rows negated: σ(-a) = 1 - σ(a) turns torch's z into 1 - ours."""
    H = h_prev.shape[1]
    sign = torch.ones(3 * H, dtype=F64)
    sign[H:2 * H] = -1.0
    cell = _torch_cell(torch.nn.GRUCell, W_x.double() * sign[:, None], W_h.double() * sign[:, None],
                       b_x.double() * sign, b_h.double() * sign)
    with torch.no_grad():
        return cell(x_t.double(), h_prev.double())


def _gru_worked(g):
    # D = 1, H = 1: r = σ(0) = 1/2, z = σ(0) = 1/2, h̃ = tanh(1 + 1/2 · 1) with x = 1, h_prev = 1.
    return {"x_t": _tensor([[1.0]]), "h_prev": _tensor([[1.0]]), "W_x": _tensor([[0.0], [0.0], [1.0]]),
            "W_h": _tensor([[0.0], [0.0], [1.0]]), "b_x": _tensor([0.0, 0.0, 0.0]), "b_h": _tensor([0.0, 0.0, 0.0])}


def _gru_random(B, D, H, z_bias=0.0):
    def build(g):
        b_x = _randn(g, 3 * H, scale=0.5)
        b_x[H:2 * H] += z_bias  # shifts z_t towards 1 (take the candidate) or 0 (keep h_{t-1})
        return {"x_t": _randn(g, B, D), "h_prev": _randn(g, B, H, scale=0.8),
                "W_x": _randn(g, 3 * H, D, scale=0.8 / D**0.5), "W_h": _randn(g, 3 * H, H, scale=0.8 / H**0.5),
                "b_x": b_x, "b_h": _randn(g, 3 * H, scale=0.5)}

    return build


GRU_STEP = Question(
    id="gru-step",
    title="one GRU step in the text's convention: h_t = (1 - z_t) * h_{t-1} + z_t * h~_t (gates r, z, h~)",
    points=3,
    args=("x_t", "h_prev", "W_x", "W_h", "b_x", "b_h"),
    outputs=("h_t",),
    reference=_gru_reference,
    cases=(
        Case("worked example (B=1, D=1, H=1, x_t = 1, h_prev = 1, z_t = r_t = 1/2)", _gru_worked),
        Case("a batch (B=3, D=2, H=4)", _gru_random(3, 2, 4), seed=4),
        Case("an update gate near 1: mostly the candidate (B=2, D=3, H=3)", _gru_random(2, 3, 3, z_bias=3.0), seed=5),
        Case("an update gate near 0: mostly h_prev (B=2, D=4, H=2)", _gru_random(2, 4, 2, z_bias=-3.0), seed=6),
    ),
    forbids=("seqcourse", "torch.nn"),  # "plain tensor operations", as the notebook asks
)


# ---- cell-gradient --------------------------------------------------------------------------


def _cell_gradient_reference(x, W_x, W_h, b):
    """Autograd through torch.nn.LSTMCell from h_0 = c_0 = 0, fed h_{t-1}.detach(): the cell path alone."""
    cell = _torch_cell(torch.nn.LSTMCell, W_x, W_h, b, torch.zeros_like(b))
    B, H = x.shape[0], W_h.shape[1]
    with torch.enable_grad():
        c0 = torch.zeros(B, H, dtype=F64, requires_grad=True)
        h, c = torch.zeros(B, H, dtype=F64), c0
        for x_t in x.double().unbind(1):
            h, c = cell(x_t, (h.detach(), c))
        # The Jacobian is diagonal on this path, so the gradient of the sum is its diagonal.
        (grad,) = torch.autograd.grad(c.sum(), c0)
    return grad


def _cell_gradient_worked(g):
    # D = 1, H = 1, W_h = 0: f_t = σ(2 x_t + 1) depends on x_t only; x = (0, 1, -1).
    return {"x": _tensor([[[0.0], [1.0], [-1.0]]]), "W_x": _tensor([[1.0], [2.0], [0.5], [-1.0]]),
            "W_h": _tensor([[0.0], [0.0], [0.0], [0.0]]), "b": _tensor([0.0, 1.0, 0.0, 0.0])}


def _cell_gradient_random(B, T, D, H, w_h_scale=0.8):
    def build(g):
        return {"x": _randn(g, B, T, D), "W_x": _randn(g, 4 * H, D, scale=0.8 / D**0.5),
                "W_h": _randn(g, 4 * H, H, scale=w_h_scale / H**0.5), "b": _randn(g, 4 * H, scale=0.5) + 1.0}

    return build


CELL_GRADIENT = Question(
    id="cell-gradient",
    title="dc_T/dc_0 along the cell path: the product of the forget gates f_1 ... f_T, shape (B, H)",
    points=3,
    args=("x", "W_x", "W_h", "b"),
    outputs=("grad",),
    reference=_cell_gradient_reference,
    cases=(
        Case("worked example (B=1, T=3, D=1, H=1, W_h = 0)", _cell_gradient_worked),
        Case("gates that depend on h_{t-1} (B=2, T=5, D=2, H=3)", _cell_gradient_random(2, 5, 2, 3, 2.0), seed=7),
        Case("one step (B=3, T=1, D=2, H=2)", _cell_gradient_random(3, 1, 2, 2), seed=8),
        Case("a longer sequence (B=2, T=12, D=3, H=4)", _cell_gradient_random(2, 12, 3, 4), seed=9),
    ),
    allow_autograd=False,
)

QUESTIONS = (LSTM_STEP, GRU_STEP, CELL_GRADIENT)
