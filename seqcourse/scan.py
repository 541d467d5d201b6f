"""The selective scan of Mamba, in a readable sequential form and a parallel (log-depth) form.

Glossary (the symbols of the State-space chapter, as in the Mamba paper):

    b  batch size        l  sequence length        d  channels (d_inner in a Mamba block)
    n  state size per channel
    x      (b, l, d)   the input sequence x_t
    delta  (b, l, d)   the step size Δ_t of every channel at every step (input-dependent)
    A      (d, n)      the diagonal state matrices, one row per channel (real, negative)
    B, C   (b, l, n)   the input and output projections B_t, C_t (input-dependent)
    D      (d,)        the skip term
    h      (b, d, n)   the state h_t

One step of the selective SSM, discretized with zero-order hold for A and Euler for B:

    Ā_t = exp(Δ_t A),    B̄_t x_t = Δ_t B_t x_t,
    h_t = Ā_t ⊙ h_{t-1} + B̄_t x_t,          y_t = C_t h_t + D ⊙ x_t.

Both scans first compute Ā_t and B̄_t x_t for every step (one elementwise operation each over
(b, l, d, n)), then solve the linear recurrence h_t = a_t ⊙ h_{t-1} + b_t, and apply C once at the
end. The recurrence is solved by

* ``linear_scan_sequential``: a plain loop over t. It loops over ``b.unbind(1)`` and stacks the
  states at the end; writing into a preallocated (b, l, ...) tensor instead would make autograd
  keep one full-size copy per step and its backward O(l²) (see ``seqcourse.bench_scan``).
* ``linear_scan_parallel``: a work-efficient parallel scan. Consecutive pairs of steps compose
  into one step of the same form,

      h_{2k} = a_{2k} a_{2k-1} h_{2k-2} + (a_{2k} b_{2k-1} + b_{2k}),

  so a sequence of length l becomes one of length l/2; solving that one (recursively) gives the
  even-indexed states h_2, h_4, ..., and one more elementwise step, h_{2k-1} = a_{2k-1} h_{2k-2}
  + b_{2k-1}, gives the odd-indexed ones. The total work is
  O(l) and the depth O(log l): on a GPU every level is one parallel kernel over the batch.
"""
from __future__ import annotations

import torch

from .validation import expect_nonempty_time, expect_tensor

__all__ = [
    "discretize_selective",
    "linear_scan_parallel",
    "linear_scan_sequential",
    "selective_scan",
    "selective_scan_parallel",
    "selective_scan_sequential",
]


def _check_linear(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> None:
    expect_tensor(a, "a", dtype="float")
    expect_tensor(b, "b", dtype=a.dtype, device=a.device, dtype_reason="(the dtype of a)")
    if a.ndim < 2 or a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape (B, T, ...) with T the time dimension; got a {tuple(a.shape)} "
            f"and b {tuple(b.shape)}"
        )
    expect_nonempty_time(a, "a")
    if h0 is not None:
        expect_tensor(h0, "h0", dtype=a.dtype, device=a.device, dtype_reason="(the dtype of a)")
        if h0.shape != a.shape[:1] + a.shape[2:]:
            raise ValueError(
                f"h0 must have the shape of one step, (B, ...) = {tuple(a.shape[:1] + a.shape[2:])}; "
                f"got {tuple(h0.shape)}"
            )


def linear_scan_sequential(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """All states of h_t = a_t ⊙ h_{t-1} + b_t, t = 1 ... T, by a loop over t.

    a, b (B, T, ...) with time on dim 1; h0 (B, ...) or None for zeros -> h (B, T, ...), h[:, t-1] = h_t.
    """
    _check_linear(a, b, h0)
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    states = []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):  # views, one per step: no full-size copies
        h = a_t * h + b_t
        states.append(h)
    return torch.stack(states, dim=1)


def linear_scan_parallel(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """The same states as ``linear_scan_sequential``, by a work-efficient parallel scan.

    a, b (B, T, ...); h0 (B, ...) or None -> h (B, T, ...). Work O(T), depth O(log T).
    """
    _check_linear(a, b, h0)
    if h0 is not None:  # fold h0 into the first step: h_1 = a_1 h0 + b_1
        b = torch.cat([(a[:, :1] * h0.unsqueeze(1) + b[:, :1]), b[:, 1:]], dim=1)
    return _scan_pairs(a, b)


def _scan_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t with h_0 = 0, by halving the sequence (see the module docstring)."""
    T = a.shape[1]
    if T == 1:
        return b
    if T % 2:  # pad one identity step (a = 1, b = 0) so the steps pair up; dropped at the end
        a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
        b = torch.cat([b, torch.zeros_like(b[:, :1])], dim=1)
    # Pair k holds steps 2k-1 and 2k (counting from 1): the first and second step of the pair.
    a_first, a_second = a[:, 0::2], a[:, 1::2]
    b_first, b_second = b[:, 0::2], b[:, 1::2]
    # Two steps in one: h_{2k} = (a_{2k} a_{2k-1}) h_{2k-2} + (a_{2k} b_{2k-1} + b_{2k}).
    h_second = _scan_pairs(a_second * a_first, a_second * b_first + b_second)  # h_2, h_4, ...
    h_before = torch.cat([torch.zeros_like(h_second[:, :1]), h_second[:, :-1]], dim=1)  # h_0, h_2, ...
    h_first = a_first * h_before + b_first  # h_1, h_3, ...
    h = torch.stack([h_first, h_second], dim=2).flatten(1, 2)  # interleave: h_1, h_2, h_3, ...
    return h[:, :T]


def _check_selective(x, delta, A, B, C, D, h0) -> None:
    expect_tensor(x, "x", dims=("b", "l", "d"), dtype="float")
    batch, length, d = x.shape
    expect_nonempty_time(x, "x")
    same = {"dtype": x.dtype, "device": x.device, "dtype_reason": "(the dtype of x)"}
    expect_tensor(delta, "delta", dims=("b", "l", "d"), size={"b": batch, "l": length, "d": d}, **same)
    expect_tensor(A, "A", dims=("d", "n"), size={"d": d}, **same)
    n = A.shape[1]
    expect_tensor(B, "B", dims=("b", "l", "n"), size={"b": batch, "l": length, "n": n}, **same)
    expect_tensor(C, "C", dims=("b", "l", "n"), size={"b": batch, "l": length, "n": n}, **same)
    if D is not None:
        expect_tensor(D, "D", dims=("d",), size={"d": d}, **same)
    if h0 is not None:
        expect_tensor(h0, "h0", dims=("b", "d", "n"), size={"b": batch, "d": d, "n": n}, **same)


def discretize_selective(x, delta, A, B):
    """Ā_t = exp(Δ_t A) and B̄_t x_t = Δ_t B_t x_t for every step, each (b, l, d, n).

    x, delta (b, l, d), A (d, n), B (b, l, n). Zero-order hold for A, Euler for B, as in Mamba.
    """
    A_bar = torch.exp(delta.unsqueeze(-1) * A)  # (b, l, d, n)
    Bx_bar = (delta * x).unsqueeze(-1) * B.unsqueeze(2)  # (b, l, d, n)
    return A_bar, Bx_bar


def selective_scan(x, delta, A, B, C, D=None, h0=None, *, parallel: bool = False):
    """The selective SSM over a whole sequence (see the module docstring for the equations).

    x, delta (b, l, d); A (d, n); B, C (b, l, n); D (d,) or None; h0 (b, d, n) or None for zeros
    -> (y (b, l, d), h_l (b, d, n)), the outputs and the last state.
    ``parallel`` picks ``linear_scan_parallel`` instead of ``linear_scan_sequential``.
    """
    _check_selective(x, delta, A, B, C, D, h0)
    A_bar, Bx_bar = discretize_selective(x, delta, A, B)
    scan = linear_scan_parallel if parallel else linear_scan_sequential
    h = scan(A_bar, Bx_bar, h0)  # (b, l, d, n)
    y = (h * C.unsqueeze(2)).sum(-1)  # (b, l, d): y_t = C_t h_t, for all t at once
    if D is not None:
        y = y + D * x
    return y, h[:, -1]


def selective_scan_sequential(x, delta, A, B, C, D=None, h0=None):
    """``selective_scan`` with the sequential loop; same arguments and results."""
    return selective_scan(x, delta, A, B, C, D, h0, parallel=False)


def selective_scan_parallel(x, delta, A, B, C, D=None, h0=None):
    """``selective_scan`` with the parallel scan; same arguments and results."""
    return selective_scan(x, delta, A, B, C, D, h0, parallel=True)
