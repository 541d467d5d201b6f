r"""Why the LSTM's cell state carries gradients: the forget-gate product and the cell path.

Symbols as in the Gating chapter (B batch, T steps, D inputs, H units; gates in torch's order
i, f, g, o). The cell update is additive,

    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t,

so along the cell path alone (the gates treated as given) one step contributes the diagonal
Jacobian ∂c_t/∂c_{t-1} = diag(f_t), and over T steps

    ∂c_T/∂c_0 = diag(f_T ⊙ ... ⊙ f_1) = diag(∏_t f_t).

No matrix product and no tanh' factor: the gradient along the cell shrinks only as fast as the
forget gates let it. In the full LSTM the gates also depend on h_{t-1} = o_{t-1} ⊙ tanh(c_{t-1}),
which adds further (non-diagonal) paths from c_0 to c_T. ``cell_state_jacobian(...,
isolate_cell_path=True)`` cuts them by feeding the cell a *detached* h_{t-1} at every step (the
same cell, the same numbers, only the h path removed from the graph), so autograd sees the cell
path alone and must return diag(∏ f_t); ``forget_gate_product`` computes ∏ f_t from the gates
directly. The chapter checks the two agree.
"""
from __future__ import annotations

import torch

from ..models.gated import LSTM, LSTMCell
from ..validation import expect_model_tensor, expect_nonempty_time

__all__ = ["cell_state_jacobian", "forget_gate_product", "forget_gates"]


def _cell(model) -> LSTMCell:
    """The one LSTMCell of an LSTMCell or a single-layer LSTM."""
    if isinstance(model, LSTMCell):
        return model
    if isinstance(model, LSTM):
        if model.num_layers != 1:
            raise ValueError(f"the LSTM must have num_layers=1 (one cell state); got {model.num_layers}")
        return model.cells[0]
    raise TypeError(f"model must be a seqcourse LSTMCell or single-layer LSTM; got {type(model).__name__}")


def _check_x(cell: LSTMCell, x: torch.Tensor) -> None:
    expect_model_tensor(cell, x, "x", dims=("B", "T", "D"), size={"D": cell.input_size})
    expect_nonempty_time(x, "x")


def forget_gates(model, x: torch.Tensor) -> torch.Tensor:
    """The forget gates f_t = σ(W_f [x_t; h_{t-1}] + b_f) of a run from zero state: (B, T, H).

    ``model``: an ``LSTMCell`` or a single-layer ``LSTM``; ``x`` (B, T, D). f_t is read from the
    cell's fused parameters (rows H:2H of ``W_x``, ``W_h``, ``b``) while the cell itself steps.
    """
    cell = _cell(model)
    _check_x(cell, x)
    H = cell.hidden_size
    state, gates = None, []
    for x_t in x.unbind(1):
        h = x_t.new_zeros(x_t.shape[0], H) if state is None else state[0]
        pre = x_t @ cell.W_x[H:2 * H].T + h @ cell.W_h[H:2 * H].T  # (B, H)
        if cell.b is not None:
            pre = pre + cell.b[H:2 * H]
        gates.append(torch.sigmoid(pre))
        state = cell(x_t, state)
    return torch.stack(gates, dim=1)


def forget_gate_product(model, x: torch.Tensor) -> torch.Tensor:
    """∏_t f_t over the T steps of ``x`` (B, T, D): (B, H), the diagonal of ∂c_T/∂c_0 along the cell path."""
    return forget_gates(model, x).prod(dim=1)


def cell_state_jacobian(model, x: torch.Tensor, isolate_cell_path: bool = True) -> torch.Tensor:
    """∂c_T/∂c_0 by autograd: (B, H, H), entry [b, i, j] = ∂c_T[b, i] / ∂c_0[b, j].

    Runs the cell from h_0 = 0 and c_0 = 0 over ``x`` (B, T, D). With ``isolate_cell_path`` the
    cell reads h_{t-1}.detach(), so c_0 reaches c_T only through c_t = f_t ⊙ c_{t-1} + ...: the
    result is diag(∏ f_t). Without it, the paths through h_{t-1} into every gate count too.
    """
    cell = _cell(model)
    _check_x(cell, x)
    B, H = x.shape[0], cell.hidden_size
    with torch.enable_grad():
        c0 = x.new_zeros(B, H, requires_grad=True)
        h, c = x.new_zeros(B, H), c0
        for x_t in x.unbind(1):
            h, c = cell(x_t, (h.detach() if isolate_cell_path else h, c))
        rows = [torch.autograd.grad(c[:, i].sum(), c0, retain_graph=True)[0] for i in range(H)]  # each (B, H)
    return torch.stack(rows, dim=1)
