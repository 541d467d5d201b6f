r"""Backpropagation through time, derived by hand for a one-layer tanh RNN.

Forward (t = 1..T, batch rows independent):

    a_t = W_x x_t + W_h h_{t-1} + b,      h_t = tanh(a_t),      h_0 given.

Let γ_t = ∂L/∂h_t be the gradient the loss sends *directly* to h_t (through the outputs at step t;
the argument ``dL_dh``). The *total* gradient δ_t = dL/dh_t also collects what flows back from the
future through h_{t+1} = tanh(W_x x_{t+1} + W_h h_t + b). Since tanh'(a) = 1 − tanh(a)²,

    δ_T = g_T,
    δ_t = γ_t + W_hᵀ (δ_{t+1} ⊙ (1 − h_{t+1}²))          for t = T−1, ..., 1.

Write ε_t = δ_t ⊙ (1 − h_t²) = dL/da_t. Each parameter is used at every step, so its gradient is a
sum over steps (and over the batch):

    dL/dW_x = Σ_t ε_t x_tᵀ,   dL/dW_h = Σ_t ε_t h_{t-1}ᵀ,   dL/db = Σ_t ε_t,
    dL/dx_t = W_xᵀ ε_t,       dL/dh_0 = W_hᵀ ε_1.

The backward is one sweep from t = T down to 1: O(T) time, and it needs every h_t from the forward
(that stored sequence is the memory cost of training a recurrent network).

Truncated BPTT with window k: the gradient from γ_t may flow back through at most k steps,
i.e. into a_t, a_{t−1}, ..., a_{t−k+1} and no further (as if h_{t−k} were detached in the forward
that produces h_t; h_0 itself is reached only when t ≤ k). Then the ε's of that term are

    ε^{(t)}_t = γ_t ⊙ (1 − h_t²),   ε^{(t)}_{s−1} = (W_hᵀ ε^{(t)}_s) ⊙ (1 − h_{s−1}²),   s > t−k+1,

and each gradient above is the same sum with ε_s replaced by Σ_t ε^{(t)}_s. With k ≥ T nothing is
cut and the result is full BPTT. This costs O(T·k); the loop is written out for each t to follow
the definition.

Shapes: W_x (H, D), W_h (H, H), b (H,), x (B, T, D), h0 (B, H), h and dL_dh (B, T, H).
"""
from __future__ import annotations

import torch

from ..validation import expect_int, expect_nonempty_time, expect_tensor

__all__ = ["rnn_bptt", "rnn_forward"]


def _check(W_x, W_h, b, x, h0):
    expect_tensor(W_x, "W_x", dims=("H", "D"), dtype="float")
    H, D = W_x.shape
    dtype, device = W_x.dtype, W_x.device
    common = dict(dtype=dtype, device=device, dtype_reason="(the dtype of W_x)")
    expect_tensor(W_h, "W_h", dims=("H", "H"), size={0: H, 1: H}, **common)
    expect_tensor(b, "b", dims=("H",), size={"H": H}, **common)
    expect_tensor(x, "x", dims=("B", "T", "D"), size={"D": D}, **common)
    expect_nonempty_time(x, "x")
    expect_tensor(h0, "h0", dims=("B", "H"), size={"B": x.shape[0], "H": H}, **common)


def rnn_forward(W_x, W_h, b, x, h0) -> torch.Tensor:
    """h_t = tanh(W_x x_t + W_h h_{t-1} + b) for t = 1..T; returns h (B, T, H) = [h_1, ..., h_T]."""
    _check(W_x, W_h, b, x, h0)
    h, states = h0, []
    for x_t in x.unbind(1):
        h = torch.tanh(x_t @ W_x.T + h @ W_h.T + b)  # (B, H)
        states.append(h)
    return torch.stack(states, dim=1)


def rnn_bptt(W_x, W_h, b, x, h0, dL_dh, truncate: int | None = None) -> dict[str, torch.Tensor]:
    """Gradients of L for which ∂L/∂h_t = dL_dh[:, t] (direct terms), by the formulas above.

    Returns a dict with keys "W_x" (H, D), "W_h" (H, H), "b" (H,), "h0" (B, H), "x" (B, T, D).
    ``truncate=k`` lets the gradient of each h_t flow back at most k steps; ``None`` is full BPTT.
    """
    _check(W_x, W_h, b, x, h0)
    B, T, _ = x.shape
    expect_tensor(dL_dh, "dL_dh", dims=("B", "T", "H"), size={"B": B, "T": T, "H": W_h.shape[0]},
                  dtype=x.dtype, device=x.device, dtype_reason="(the dtype of x)")
    if truncate is not None:
        expect_int(truncate, "truncate", minimum=1)
    with torch.no_grad():
        h = rnn_forward(W_x, W_h, b, x, h0)
        h_prev = torch.cat([h0.unsqueeze(1), h[:, :-1]], dim=1)  # h_{t-1} for t = 1..T: (B, T, H)
        slope = 1 - h**2  # tanh'(a_t) = 1 - h_t^2: (B, T, H)
        eps = torch.zeros_like(h)  # ε_t = dL/da_t, summed over every loss term that reaches a_t
        dh0 = torch.zeros_like(h0)
        if truncate is None:
            delta = torch.zeros_like(h0)  # δ_{t+1} ⊙ (1 − h_{t+1}²) pulled back: W_hᵀ ε_{t+1}
            for t in reversed(range(T)):
                e = (dL_dh[:, t] + delta) * slope[:, t]  # ε_t = δ_t ⊙ (1 − h_t²)
                eps[:, t] = e
                delta = e @ W_h  # W_hᵀ ε_t, as rows: (B, H)
            dh0 = delta
        else:
            for t in range(T):  # the loss term γ_t · h_t ...
                e = dL_dh[:, t] * slope[:, t]
                for s in range(t, max(t - truncate, -1), -1):  # ... reaches a_t, ..., a_{t-k+1}
                    eps[:, s] += e
                    back = e @ W_h  # gradient reaching h_{s-1}
                    if s == 0:
                        dh0 += back
                    else:
                        e = back * slope[:, s - 1]
        return {
            "W_x": torch.einsum("bth,btd->hd", eps, x),
            "W_h": torch.einsum("bth,btk->hk", eps, h_prev),
            "b": eps.sum(dim=(0, 1)),
            "h0": dh0,
            "x": eps @ W_x,
        }
